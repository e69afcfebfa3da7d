"""The `ciu` command line against its own embedded cluster, end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ciu.cli import app
from ciu.cluster import Cluster
from ciu.settings import DatabaseSettings

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "city.toml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    # tmp_path sits in a private directory: the cluster must then move where postgres can reach it
    monkeypatch.setenv("CIU_HOME", str(tmp_path / "twin"))
    monkeypatch.delenv("CIU_DATABASE_URL", raising=False)
    yield tmp_path / "twin"
    Cluster.from_settings(DatabaseSettings()).destroy()


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_embedded_database_lifecycle_and_sample(home, tmp_path):
    assert CliRunner().invoke(app, ["db", "status"]).exit_code == 3  # not initialised yet
    assert "started" in invoke("db", "start")
    assert str(Cluster.from_settings(DatabaseSettings()).pgdata).startswith("/var/lib/ciu-twin/")
    assert "already running" in invoke("db", "start")
    assert "running" in invoke("db", "status")
    assert invoke("db", "url").startswith("postgresql://postgres@/ciu?host=/tmp/ciu-")
    assert re.search(r"applied migrations \[1(, \d+)*\]", invoke("db", "migrate"))  # 001 and any later ones
    assert "schema up to date" in invoke("db", "migrate")
    out = invoke("sample", "build", "--config", str(SAMPLE), "--buildings", "8", "--weeks", "1")
    assert "built in" in out
    assert "nothing to do" in invoke("sample", "build", "--config", str(SAMPLE), "--buildings", "8", "--weeks", "1")
    info = invoke("info")
    assert re.search(r"building\s+8\n", info) and "people" in info and "sha256" in info
    assert "ingest.generator" in invoke("sources")
    # a variable of the user's own, registered once; the same again changes nothing, another definition is refused
    add = ["variables", "add", "pedestrians", "--unit", "persons", "--space", "social", "--rollup", "sum",
           "--resample", "sum"]
    assert "'pedestrians' registered" in invoke(*add)
    assert "already registered, unchanged" in invoke(*add)
    clash = CliRunner().invoke(app, add[:-4] + ["--rollup", "mean"])
    assert clash.exit_code != 0 and "rollup='sum'" in str(clash.exception)
    bad = CliRunner().invoke(app, ["variables", "add", "Pedestrians", "--unit", "p", "--space", "social",
                                   "--rollup", "sum"])
    assert bad.exit_code != 0 and "lower-case" in str(bad.exception)
    assert re.search(r"pedestrians\t\[persons\]\tsocial/public\troll-up sum", invoke("variables", "list"))
    html = tmp_path / "view.html"
    assert "written to" in invoke("view", "--out", str(html))
    assert html.stat().st_size > 100_000
    invoke("db", "stop")
    assert CliRunner().invoke(app, ["db", "status"]).exit_code == 3


def test_bad_sample_config_is_a_clear_error(home, tmp_path):
    bad = tmp_path / "city.toml"
    bad.write_text("buildings = -3\n")
    result = CliRunner().invoke(app, ["sample", "build", "--config", str(bad)])
    assert result.exit_code != 0
    assert "city.toml" in str(result.exception)
