#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus from generated data (scripts/fuzz.sh calls this).

usage: fuzz-seeds.py GENERATED_DIR CORPUS_DIR

GENERATED_DIR holds `quickchat-etl generate` output (mongo/*.json, mysql/users.csv) and
`generate --stream` output (clickstream.jsonl, chat-stream.jsonl). Each seed is a few records
of it in the form its fuzz target reads: lines for JSON, Extended JSON and CSV (after the
header row), one byte of length before each Protobuf message (encoded here from the chat
events' JSON, fields numbered as in proto/chat.proto).
"""

import datetime
import json
import pathlib
import sys

RECORDS_PER_SEED = 6
SEEDS_PER_TARGET = 40

CHAT_STRING_FIELDS = {"message_id": 1, "channel_id": 2, "user_id": 3, "content": 4, "message_type": 5}
CHAT_TIMESTAMP_FIELDS = {"sent_at": 6, "delivered_at": 7}


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def timestamp(text):
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    micros = round(moment.timestamp() * 1_000_000)
    seconds, rest = divmod(micros, 1_000_000)
    return varint(1 << 3) + varint(seconds) + varint(2 << 3) + varint(rest * 1000)


def chat_message(event):
    out = b""
    for name, field in CHAT_STRING_FIELDS.items():
        if event.get(name) is not None:
            out += length_delimited(field, event[name].encode())
    for name, field in CHAT_TIMESTAMP_FIELDS.items():
        if event.get(name) is not None:
            out += length_delimited(field, timestamp(event[name]))
    return out


def chunks(items, size):
    for start in range(0, min(len(items), size * SEEDS_PER_TARGET), size):
        yield items[start : start + size]


def write(corpus, target, seeds):
    folder = corpus / target
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, seed in enumerate(seeds):
        (folder / f"generated-{i:03}").write_bytes(seed)
        count += 1
    print(f"{target}: {count} generated seeds in {folder}")


def main():
    generated, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    messages = (generated / "mongo" / "messages.json").read_bytes().splitlines(keepends=True)
    write(corpus, "extended_json_lines", (b"".join(c) for c in chunks(messages, RECORDS_PER_SEED)))

    clicks = (generated / "clickstream.jsonl").read_bytes().splitlines(keepends=True)
    write(corpus, "json_records", (b"".join(c) for c in chunks(clicks, RECORDS_PER_SEED)))

    header, *users = (generated / "mysql" / "users.csv").read_bytes().splitlines(keepends=True)
    write(corpus, "csv_file", (header + b"".join(c) for c in chunks(users, RECORDS_PER_SEED)))

    chats = [chat_message(json.loads(line)) for line in (generated / "chat-stream.jsonl").read_bytes().splitlines()]
    framed = [bytes([len(m)]) + m for m in chats if len(m) < 256]
    write(corpus, "protobuf_records", (b"".join(c) for c in chunks(framed, RECORDS_PER_SEED)))

    pipelines = sorted(pathlib.Path("pipelines").glob("*.toml"))
    write(corpus, "pipeline_file", (p.read_bytes() for p in pipelines))

    dashboards = sorted(pathlib.Path("dashboards").glob("*.toml"))
    write(corpus, "dashboard_file", (p.read_bytes() for p in dashboards))


if __name__ == "__main__":
    main()
