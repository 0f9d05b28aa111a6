"""Each function's deployment package as Lambda gets it: the release binary alone in a
zip, named bootstrap (what cargo-lambda's --output-format zip makes).

usage: zip_sizes.py BIN_DIR OUT_DIR NAME...
"""

import os
import sys
import zipfile


def main(bin_dir: str, out_dir: str, names: list[str]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        binary = os.path.join(bin_dir, name)
        package = os.path.join(out_dir, f"{name}.zip")
        with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(binary, "bootstrap")
        print(
            f"{name:<11} binary {os.path.getsize(binary) / 1e6:5.2f} MB"
            f"   bootstrap.zip {os.path.getsize(package) / 1e6:5.2f} MB"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
