"""The committed Python protobuf/gRPC modules are what scripts/gen-proto makes of proto/ (as
temporal's sdk-python checks its generated code): a proto changed without regenerating, or
a generated file edited by hand, fails here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "python" / "millstream" / "_proto"


def _sources(root: Path) -> dict[Path, str]:
    return {
        p.relative_to(root): p.read_text()
        for p in root.rglob("*")
        if p.suffix in (".py", ".pyi") and "__pycache__" not in p.parts
    }


def test_generated_modules_match_the_protos(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    subprocess.run([str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True, env=env)
    fresh = _sources(tmp_path)
    committed = _sources(COMMITTED)
    assert sorted(fresh) == sorted(committed)
    stale = [str(name) for name, text in fresh.items() if committed[name] != text]
    assert not stale, f"run scripts/gen-proto: {stale} differ from proto/"


def test_every_proto_file_is_generated() -> None:
    protos = {p.stem for p in (ROOT / "proto" / "millstream" / "v1").glob("*.proto")}
    modules = {p.name.removesuffix("_pb2.py") for p in (COMMITTED / "v1").glob("*_pb2.py")}
    assert protos == modules
