#!/usr/bin/env python3
"""The wire JSON Schema against the corpus: every record of schemas/corpus/trades.jsonl must get the
verdict the corpus states (crates/model/tests/wire_schema.rs checks the validator against the same
corpus, so the two agree). Records the corpus marks `lexical` (escapes, duplicate keys) or
`processing_time` (future timestamps) break rules JSON Schema cannot state: the schema must accept
them, which keeps that documented gap exact. Installs `jsonschema` into a private venv if missing.

    python3 scripts/check_wire_schema.py
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(os.environ.get("TRADEWIND_CACHE", os.path.expanduser("~/.cache/tradewind")), "schema-venv")


def ensure_jsonschema():
    try:
        import jsonschema  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python3")
    if os.environ.get("TW_SCHEMA_VENV") != "1":
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "jsonschema>=4.18"])
        os.environ["TW_SCHEMA_VENV"] = "1"
        os.execv(py, [py] + sys.argv)
    sys.exit("jsonschema is not importable even in the private venv")


def no_constants(name):
    raise ValueError(f"{name} is not JSON")


def main():
    ensure_jsonschema()
    import jsonschema

    with open(os.path.join(ROOT, "schemas", "coincap-trade.schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    problems, checked = [], 0
    with open(os.path.join(ROOT, "schemas", "corpus", "trades.jsonl"), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            row = json.loads(line)
            record, reason = row["record"], row["reason"]
            try:
                value = json.loads(record, parse_constant=no_constants)
            except ValueError:
                if reason != "syntax":
                    problems.append(f"line {n}: not JSON, but the corpus says {reason!r}")
                checked += 1
                continue
            accepted = validator.is_valid(value)
            if row.get("lexical") or row.get("processing_time"):
                want = True  # a rule the schema cannot state: it must accept, exactly as documented
            else:
                want = reason is None
            if accepted != want:
                errors = [e.message for e in validator.iter_errors(value)][:2]
                problems.append(f"line {n} ({row['note']}): schema {'accepts' if accepted else 'rejects'}, "
                                f"corpus says {reason or 'valid'} {errors}")
            checked += 1
    if problems:
        print("wire schema and corpus disagree:\n  " + "\n  ".join(problems))
        return 1
    print(f"wire schema: {checked} corpus records agree with the validator's verdicts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
