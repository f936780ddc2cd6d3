#!/usr/bin/env python3
"""Extracts every panel query of the Switchboard Grafana boards and, with
--prometheus, runs each one against a live Prometheus.

Template variables are substituted the way Grafana would with "All" selected:
`$channel` and `$queue` become `.*` (or the values given with --channel and
--queue), `$__rate_interval` becomes `1m` (--rate-interval).

    grafana/check-queries.py                      # print one query per line
    grafana/check-queries.py --json               # [{board, panel, ref, expr}, ...]
    grafana/check-queries.py --prometheus http://127.0.0.1:9090
        # exit 1 unless every query parses and returns data

Only the standard library is used. The Rust integration test
(tests/api/prometheus.rs) does the same extraction itself.
"""
import argparse
import json
import pathlib
import sys
import urllib.error
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
BOARDS = [HERE / "dashboards" / "contact-center.json", HERE / "dashboards" / "routing-engine.json"]


def panels(items):
    """Every panel, including those nested in (collapsed) rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries(board_path):
    board = json.loads(board_path.read_text())
    for panel in panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                yield {"board": board_path.name, "panel": panel.get("title", ""),
                       "ref": target.get("refId", ""), "expr": expr}


def substitute(expr, channel, queue, rate_interval):
    # Longest names first, so `$__rate_interval` is not hit by a shorter one.
    for name, value in [("$__rate_interval", rate_interval), ("${channel}", channel), ("${queue}", queue),
                        ("$channel", channel), ("$queue", queue)]:
        expr = expr.replace(name, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted variable in {expr!r}")
    return expr


def run(prometheus, expr):
    url = prometheus.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as err:
        body = json.load(err)
    if body.get("status") != "success":
        return f"error: {body.get('errorType')}: {body.get('error')}"
    if not body["data"]["result"]:
        return "empty result"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", help="base URL of a Prometheus to run every query against")
    ap.add_argument("--channel", default=".*", help="value for $channel (a regex; default .*)")
    ap.add_argument("--queue", default=".*", help="value for $queue (a regex; default .*)")
    ap.add_argument("--rate-interval", default="1m", help="value for $__rate_interval (default 1m)")
    ap.add_argument("--json", action="store_true", help="print the queries as JSON")
    args = ap.parse_args()

    found = []
    for path in BOARDS:
        for q in queries(path):
            q["expr"] = substitute(q["expr"], args.channel, args.queue, args.rate_interval)
            found.append(q)
    if not found:
        print("no queries found", file=sys.stderr)
        return 1

    if not args.prometheus:
        if args.json:
            print(json.dumps(found, indent=2))
        else:
            for q in found:
                print(q["expr"])
        return 0

    failures = 0
    for q in found:
        problem = run(args.prometheus, q["expr"])
        if problem:
            failures += 1
            print(f"FAIL {q['board']} / {q['panel']} [{q['ref']}]: {problem}\n     {q['expr']}")
    print(f"{len(found) - failures}/{len(found)} queries returned data")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
