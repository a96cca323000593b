"""Replays the EventBridge pattern corpus (shared/corpora/eventbridge-patterns, outcomes
recorded against real AWS) through boto3 `events.test_event_pattern`: 100% required."""
import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import error_code

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "eventbridge-patterns"
CASES = sorted(CORPUS.glob("*.json5")) if CORPUS.is_dir() else []


def json5_to_json(src: str) -> str:
    """The corpus uses JSON5 only for comments and trailing commas."""
    out, i, in_str = [], 0, False
    while i < len(src):
        c = src[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < len(src):
                out.append(src[i + 1])
                i += 2
                continue
            in_str = c != '"'
            i += 1
            continue
        if c == '"':
            in_str = True
            out.append(c)
        elif src.startswith("//", i):
            while i < len(src) and src[i] != "\n":
                i += 1
            continue
        elif src.startswith("/*", i):
            i = src.index("*/", i) + 2
            continue
        elif c == ",":
            j = i + 1
            while j < len(src) and (src[j].isspace() or src.startswith("//", j)):
                if src.startswith("//", j):
                    while j < len(src) and src[j] != "\n":
                        j += 1
                else:
                    j += 1
            if j < len(src) and src[j] in "}]":
                i += 1
                continue
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


class Pairs(list):
    """An object kept as its key/value pairs, so duplicate keys reach the server as written."""


def dump(v) -> str:
    if isinstance(v, Pairs):
        return "{" + ",".join(json.dumps(k) + ":" + dump(x) for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    return json.dumps(v)


def test_corpus_is_present():
    assert len(CASES) == 155, f"expected the 155-case corpus at {CORPUS}"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_event_pattern_case(server, case):
    doc = dict(json.loads(json5_to_json(case.read_text()), object_pairs_hook=Pairs))
    events = server.client("events")
    pattern, event = dump(doc["EventPattern"]), dump(doc["Event"])
    if case.stem.endswith("_EXC"):
        with pytest.raises(ClientError) as e:
            events.test_event_pattern(EventPattern=pattern, Event=event)
        assert error_code(e.value) == "InvalidEventPatternException"
    else:
        got = events.test_event_pattern(EventPattern=pattern, Event=event)["Result"]
        assert got is (not case.stem.endswith("_NEG")), case.stem
