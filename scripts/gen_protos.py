"""Generate lineagerun/rpc/*_pb2*.py from protos/ (the only way to make them).

    python scripts/gen_protos.py           # regenerate in place
    python scripts/gen_protos.py --check   # fail if committed code is stale

The .proto tree mirrors the package (protos/lineagerun/rpc/x.proto), so the
generated imports read `from lineagerun.rpc import x_pb2`.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = ROOT / "lineagerun" / "rpc"


def generate(out_root: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency, pinned in pyproject.toml

    import grpc_tools

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise SystemExit("no .proto files under protos/")
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    # protoc resolves paths relative to the include root.
    import os

    cwd = os.getcwd()
    os.chdir(PROTO_ROOT)
    try:
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
    finally:
        os.chdir(cwd)
    return sorted((out_root / "lineagerun" / "rpc").glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, do not write")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        names = {p.name for p in generated}
        existing = {p.name for p in OUT_PACKAGE.glob("*_pb2*.py*")}
        if opts.check:
            stale = sorted(
                n
                for n in names | existing
                if n not in names
                or n not in existing
                or not filecmp.cmp(Path(tmp) / "lineagerun" / "rpc" / n, OUT_PACKAGE / n, shallow=False)
            )
            if stale:
                print("generated protobuf code is stale: " + ", ".join(stale))
                print("run `make protos` and commit the result")
                return 1
            print(f"protobuf code is fresh ({len(names)} files)")
            return 0
        for name in existing - names:
            (OUT_PACKAGE / name).unlink()
        for path in generated:
            shutil.copyfile(path, OUT_PACKAGE / path.name)
        print(f"generated {len(generated)} files into {OUT_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
