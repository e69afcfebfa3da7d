-- Levels are data: what kind of unit a level holds and the prefix of the keys
-- generated for it. The default level names get the kinds their names suggest.
ALTER TABLE ciu.level
    ADD COLUMN kind text NOT NULL DEFAULT 'area' CHECK (kind IN ('storey', 'structure', 'area')),
    ADD COLUMN prefix text NOT NULL DEFAULT '' CHECK (prefix ~ '^[a-z0-9_]*$');
COMMENT ON COLUMN ciu.level.kind IS 'storey: volumes stacked in a structure (floors); structure: extruded footprints placed by a point (buildings); area: placed by overlap.';
COMMENT ON COLUMN ciu.level.prefix IS 'Prefix of the local keys generated for units of this level (e.g. b for buildings).';

ALTER TABLE ciu.level DISABLE TRIGGER level_guard;  -- describing existing levels changes no unit
UPDATE ciu.level SET kind = k.kind, prefix = k.prefix
  FROM (VALUES ('floor', 'storey', 'f'), ('building', 'structure', 'b'), ('grid', 'area', 'g'),
               ('district', 'area', 'd')) AS k (name, kind, prefix)
 WHERE ciu.level.name = k.name;
ALTER TABLE ciu.level ENABLE TRIGGER level_guard;
