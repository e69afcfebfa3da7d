"""Binary COPY streams built column-wise: byte layout, JSON cutting, and a round trip through PostGIS."""

from __future__ import annotations

import doctest
import random
import string
import struct

import numpy as np
import orjson
import psycopg
import pyarrow as pa
import shapely

from ciu import pgcopy


def test_module_examples() -> None:
    result = doctest.testmod(pgcopy)
    assert result.attempted > 0 and result.failed == 0


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.random()
    if depth < 3 and kind < 0.2:
        return {"".join(rng.choice(string.printable) for _ in range(rng.randint(0, 5))): _random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    if depth < 3 and kind < 0.35:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind < 0.7:  # strings full of what looks like structure: quotes, backslashes, brackets, commas
        return "".join(rng.choice(string.printable + '\\"{}[],é€') for _ in range(rng.randint(0, 8)))
    if kind < 0.8:
        return None
    return rng.choice([rng.random(), rng.randint(-5, 5), True])


def test_json_texts_cut_matches_one_dump_per_object() -> None:
    rng = random.Random(3)
    objects = [{}, {"a": 'x,y}{]"', "b": [1, {"c": "\\"}]}, {"q": '\\\\",', "é": "ü"}]
    objects += [{"k": _random_value(rng), "z": _random_value(rng)} for _ in range(5000)] + [{}]
    texts = pgcopy.json_texts(objects)
    assert len(texts) == len(objects)
    assert [t.as_py() for t in texts] == [orjson.dumps(o) for o in objects]
    assert len(pgcopy.json_texts([])) == 0


def test_fixed_width_rows_match_the_binary_copy_layout() -> None:
    a, b = np.array([1, -2, 3]), np.array([0.5, np.nan, 1e300])
    by_columns = b"".join(bytes(p) for p in pgcopy.stream([[pgcopy.fixed(a, "int8"), pgcopy.fixed(b, "float8")]]))
    by_record = pgcopy.HEADER + b"".join(struct.pack(">hiqid", 2, 8, int(x), 8, float(y)) for x, y in zip(a, b)) \
        + pgcopy.TRAILER
    assert by_record == by_columns
    assert by_columns.startswith(pgcopy.HEADER) and by_columns.endswith(pgcopy.TRAILER)


def test_round_trip_through_postgis_with_nulls_in_every_kind(db_url: str) -> None:
    rng = np.random.default_rng(5)
    n = 2_000
    ints = rng.integers(-10**12, 10**12, n)
    floats = rng.normal(size=n)
    null = rng.random(n) < 0.3
    texts = [None if null[i] else f"unit/{i}/é" for i in range(n)]
    objects = [{"i": int(i), "s": "a\"b\\c", "l": [1, None]} for i in range(n)]
    geoms = shapely.points(rng.uniform(-74, -73, n), rng.uniform(40, 41, n))
    ewkb = shapely.to_wkb(shapely.set_srid(geoms, 4326), include_srid=True)
    fields = [pgcopy.fixed(ints, "int8", null=null), pgcopy.fixed(floats, "float8", null=~null),
              pgcopy.varlen(pa.array(texts, type=pa.string())),
              pgcopy.varlen(pgcopy.json_texts(objects), prefix=b"\x01"),
              pgcopy.varlen(pa.array(ewkb, type=pa.binary()))]
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TEMP TABLE t (row serial, i int8, f float8, s text, j jsonb, g geometry(Point, 4326))")
        pgcopy.copy_in(conn, "COPY t (i, f, s, j, g) FROM STDIN (FORMAT BINARY)",
                       [[f.slice(0, 700) for f in fields], [f.slice(700) for f in fields]])
        rows = conn.execute("SELECT i, f, s, j, ST_X(g), ST_Y(g), ST_SRID(g) FROM t ORDER BY row").fetchall()
    assert len(rows) == n
    for k, (i, f, s, j, x, y, srid) in enumerate(rows):
        assert i == (None if null[k] else int(ints[k]))
        assert f == (float(floats[k]) if null[k] else None)
        assert s == texts[k]
        assert j == objects[k]
        assert (x, y, srid) == (geoms[k].x, geoms[k].y, 4326)
