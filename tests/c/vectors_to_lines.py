"""Turns the shared test vectors (tests/vectors/*.json) into the line format test_vectors.c reads.

    vector <file> <algorithm> <requests> <period_us> <burst, 0 for the default>
    step <index> <hit|peek|reset> <now_us> x<key as hex> <cost> [<allowed 0|1> <limit>
         <remaining> <reset_after_us> <retry_after_us>]

Keys are hex-encoded (behind an "x", so the empty key is a word too) so that any UTF-8 key
survives the whitespace-separated format. Usage: python3 vectors_to_lines.py FILE.json...
"""

import json
import os
import sys

EXPECT_FIELDS = ("allowed", "limit", "remaining", "reset_after_us", "retry_after_us")


def lines(path):
    with open(path, encoding="utf-8") as f:
        vector = json.load(f)
    quota = vector["quota"]
    yield "vector {} {} {} {} {}".format(
        os.path.basename(path),
        vector["algorithm"],
        int(quota["requests"]),
        int(quota["period_us"]),
        int(quota.get("burst") or 0),
    )
    for index, step in enumerate(vector["steps"]):
        op = step.get("op", "hit")
        if op not in ("hit", "peek", "reset"):
            raise SystemExit(f"{path}: step {index}: unknown op {op!r}")
        words = [
            "step",
            str(index),
            op,
            str(int(step["now_us"])),
            "x" + step.get("key", "k").encode("utf-8").hex(),
            str(int(step.get("cost", 1))),
        ]
        if op != "reset":
            expect = step.get("expect")
            if expect is None:
                raise SystemExit(f"{path}: step {index}: a {op} step needs 'expect'")
            words.append("1" if expect["allowed"] else "0")
            words.extend(str(int(expect[field])) for field in EXPECT_FIELDS[1:])
        yield " ".join(words)


def main(paths):
    if not paths:
        raise SystemExit("no vector files given")
    for path in sorted(paths):
        for line in lines(path):
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
