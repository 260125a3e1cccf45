#!/usr/bin/env python3
"""A ScheduleZero client, unchanged but for the base URL: what tests/schedule_ding_dongs.py and
the Discord bots of ScheduleZero do, with urllib (stdlib only) instead of requests.

Usage: schedulezero_client.py HANDLER_ID METHOD   (runs inside a namespace whose WireGuard peer
                                                   is an officer; prints one JSON report)
METHOD is called with ScheduleZero's ding-dong params, {"quarter": 1|2|3}.

It checks health and handlers, schedules three ding-dongs (date, interval, cron), lists them,
runs one now, waits for the date one to succeed in the execution log, then deletes them. It
also sends what ScheduleZero got wrong: a repeated job_id, an unknown id to delete and a
non-JSON body. Every (method, path, status, body) is in the report; the Rust test judges it.
"""
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

BASE_URL = "http://10.88.88.1:8888"
HANDLER_ID, METHOD = sys.argv[1], sys.argv[2]
report = {"calls": []}


def request(method, path, payload=None, raw=None, content_type="application/json"):
    data = raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    headers = {"Content-Type": content_type} if data is not None else {}
    req = urllib.request.Request(BASE_URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, body = r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        status, body = e.code, json.loads(e.read() or b"null")
    report["calls"].append({"method": method, "path": path, "status": status, "body": body})
    return status, body


def schedule_job(job_id, trigger, quarter):
    return request("POST", "/api/schedule", {
        "handler_id": HANDLER_ID,
        "job_method": METHOD,
        "job_params": {"quarter": quarter},
        "trigger": trigger,
        "job_id": job_id,
    })


request("GET", "/api/health")
request("GET", "/api/handlers")

# schedule_ding_dongs.py: a ding-dong in a few seconds, one every minute, one on weekdays.
run_date = (datetime.now(timezone.utc) + timedelta(seconds=4)).replace(tzinfo=None).isoformat()
schedule_job("ding-dong-1", {"type": "date", "run_date": run_date}, 1)
schedule_job("ding-dong-2", {"type": "interval", "minutes": 1}, 2)
schedule_job("ding-dong-3", {"type": "cron", "day_of_week": "mon-fri", "hour": 9, "minute": 30,
                             "timezone": "Europe/Berlin"}, 3)
# ScheduleZero kept the old schedule silently and answered 201.
schedule_job("ding-dong-1", {"type": "interval", "seconds": 10}, 1)

request("GET", "/api/schedules")
request("POST", "/api/run_now", {"handler_id": HANDLER_ID, "job_method": METHOD,
                                 "job_params": {"quarter": 2}})

# Wait for the date ding-dong in the execution log.
deadline = time.time() + 30
while time.time() < deadline:
    status, body = request("GET", "/api/executions?job_id=ding-dong-1&limit=10")
    if status == 200 and any(r["status"] == "success" for r in body["records"]):
        break
    time.sleep(1)
request("GET", "/api/executions/stats")
request("GET", "/api/executions/errors")

for job_id in ("ding-dong-1", "ding-dong-2", "ding-dong-3", "no-such-dong"):
    request("DELETE", f"/api/schedules/{job_id}")
request("GET", "/api/schedules")

# ScheduleZero answered this with a 500 and a traceback.
request("POST", "/api/schedule", raw=b"handler_id=x", content_type="application/x-www-form-urlencoded")

print(json.dumps(report))
