#!/usr/bin/env python3
"""Trims a syft SPDX JSON SBOM for a test fixture: drops the files that a
package CONTAINS and DROP matches (with every relationship naming them), then
recomputes the verification code of each package that lost files (SPDX 2.3
section 7.9: SHA1 over the sorted SHA1s of the package's files), so that the
result is still valid, consistent SPDX.

    trim.py IN OUT
"""
import hashlib
import json
import re
import sys

# libc6's iconv modules: keep three of about 250, and the module cache.
DROP = re.compile(r"^usr/lib/x86_64-linux-gnu/gconv/(?!(UTF-16|UTF-32|UNICODE)\.so$|gconv-modules)")


def main(src, dst):
    with open(src) as f:
        doc = json.load(f)
    files = {f["SPDXID"]: f for f in doc["files"]}
    drop = {i for i, f in files.items() if DROP.search(f["fileName"])}
    touched = {r["spdxElementId"] for r in doc["relationships"]
               if r["relatedSpdxElement"] in drop and r["relationshipType"] == "CONTAINS"}
    doc["files"] = [f for f in doc["files"] if f["SPDXID"] not in drop]
    doc["relationships"] = [r for r in doc["relationships"]
                            if r["spdxElementId"] not in drop and r["relatedSpdxElement"] not in drop]
    for p in doc["packages"]:
        if p["SPDXID"] not in touched:
            continue
        sums = sorted(c["checksumValue"].lower()
                      for r in doc["relationships"]
                      if r["spdxElementId"] == p["SPDXID"] and r["relationshipType"] == "CONTAINS"
                      and r["relatedSpdxElement"] in files
                      for c in files[r["relatedSpdxElement"]]["checksums"] if c["algorithm"] == "SHA1")
        p["packageVerificationCode"] = {
            "packageVerificationCodeValue": hashlib.sha1("".join(sums).encode()).hexdigest()}
    with open(dst, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"trim.py: dropped {len(drop)} files; {len(doc['files'])} files, "
          f"{len(doc['relationships'])} relationships left", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
