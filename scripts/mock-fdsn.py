#!/usr/bin/env python3
"""A local FDSN event service over a GeoJSON fixture, for benchmarks and manual runs.

    scripts/mock-fdsn.py testdata/usgs_all_week_2018-06-14T0919Z.geojson 8099

serves http://127.0.0.1:8099/fdsnws/event/1/query with the parameters quakesync uses
(starttime, endtime, updatedafter, orderby, limit, 1-based offset, includedeleted) and
/fdsnws/event/1/count. MOCK_DELAY_SECS=0.5 makes every answer slow. Standard library only; never used by the test suite (the tests
have their own in-process mock)."""
import json
import os
import sys
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

fixture = json.load(open(sys.argv[1]))
port = int(sys.argv[2]) if len(sys.argv) > 2 else 8099
features = fixture["features"]
generated = fixture["metadata"]["generated"]


def ms(s):
    s = s.replace("Z", "")
    return int(datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp() * 1000)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(float(os.environ.get("MOCK_DELAY_SECS", "0")))  # a slow upstream
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        hits = features
        if "starttime" in q:
            hits = [f for f in hits if f["properties"]["time"] >= ms(q["starttime"])]
        if "endtime" in q:
            hits = [f for f in hits if f["properties"]["time"] < ms(q["endtime"])]
        if "updatedafter" in q:
            hits = [f for f in hits if f["properties"]["updated"] >= ms(q["updatedafter"])]
        if q.get("orderby") == "time-asc":
            hits = sorted(hits, key=lambda f: (f["properties"]["time"], f["id"]))
        else:
            hits = sorted(hits, key=lambda f: -f["properties"]["time"])
        if url.path.endswith("/count"):
            body = {"count": len(hits), "maxAllowed": 20000}
        else:
            limit = int(q.get("limit", 20000))
            offset = int(q.get("offset", 1))
            page = hits[offset - 1: offset - 1 + limit]
            body = {"type": "FeatureCollection",
                    "metadata": {"generated": generated, "count": len(page), "limit": limit, "offset": offset,
                                 "status": 200, "api": "1.10.3", "title": "mock", "url": self.path},
                    "features": page}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
