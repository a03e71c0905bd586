"""ObsPy against a running quakesync (driven by tests/fdsn_clients.rs).

argv: BASE_URL EXPECTED_JSON XSD_PATH. Exits non-zero with a message on the first failure.
Every check uses ObsPy's own client and readers (and lxml for the XSD), never our parser.
"""
import io
import json
import sys
import urllib.request

from lxml import etree
from obspy import UTCDateTime, read_events
from obspy.clients.fdsn import Client
from obspy.clients.fdsn.header import (FDSNBadRequestException,
                                       FDSNNoDataException)

base, expected_path, xsd_path = sys.argv[1:4]
with open(expected_path) as f:
    exp = json.load(f)


def check(cond, msg):
    if not cond:
        print("FAILED: " + msg)
        sys.exit(1)
    print("ok: " + msg.split("\n")[0][:160])


def same_events(cat, want, what):
    got = sorted(cat, key=lambda e: (e.preferred_origin().time, str(e.resource_id)))
    check(len(got) == len(want), f"{what}: {len(got)} events, expected {len(want)}")
    for ev, w in zip(got, sorted(want, key=lambda w: (w["time"], w["rid"]))):
        o = ev.preferred_origin()
        check(str(ev.resource_id) == w["rid"], f"{what}: id {ev.resource_id} == {w['rid']}")
        check(abs(o.time - UTCDateTime(w["time"])) < 1e-6, f"{what}: {w['id']} time {o.time}")
        check(abs(o.latitude - w["lat"]) < 1e-9 and abs(o.longitude - w["lon"]) < 1e-9,
              f"{what}: {w['id']} epicentre")
        if w["depth_m"] is None:
            check(o.depth is None, f"{what}: {w['id']} no depth")
        else:
            check(abs(o.depth - w["depth_m"]) < 1e-3, f"{what}: {w['id']} depth {o.depth}")
        m = ev.preferred_magnitude()
        if w["mag"] is None:
            check(m is None, f"{what}: {w['id']} no magnitude")
        else:
            check(abs(m.mag - w["mag"]) < 1e-9 and m.magnitude_type == w["magtype"],
                  f"{what}: {w['id']} magnitude {m.mag} {m.magnitude_type}")


# Discovery: the WADL parsed, the catalogs read, no station or dataselect service.
client = Client(base, timeout=30)
check("event" in client.services and "station" not in client.services
      and "dataselect" not in client.services,
      f"discovered services: {sorted(client.services)}")
params = client.services["event"]
for name in ["starttime", "endtime", "latitude", "longitude", "minradius", "maxradius",
             "mindepth", "maxdepth", "magnitudetype", "eventtype", "includeallorigins",
             "includeallmagnitudes", "includearrivals", "eventid", "limit", "offset",
             "orderby", "catalog", "contributor", "updatedafter"]:
    check(name in params, f"WADL lists {name}")
check(params["maxradius"]["type"] is float and params["limit"]["type"] is int
      and params["starttime"]["type"] is UTCDateTime, "WADL types")
check(not any(p["required"] for p in params.values()), "no parameter required")
check(sorted(client.services["available_event_catalogs"]) == exp["catalogs"],
      f"catalogs {sorted(client.services['available_event_catalogs'])}")
check(sorted(client.services["available_event_contributors"]) == exp["contributors"],
      "contributors")

# get_events: QuakeML (no format sent), the expected events, origins and magnitudes.
cat = client.get_events(starttime=UTCDateTime(exp["window"][0]),
                        endtime=UTCDateTime(exp["window"][1]),
                        minmagnitude=exp["minmag"], orderby="time-asc")
same_events(cat, exp["window_events"], "time window and minmagnitude")

cat = client.get_events(latitude=exp["radius"]["lat"], longitude=exp["radius"]["lon"],
                        maxradius=exp["radius"]["deg"])
same_events(cat, exp["radius_events"], "radius search")

cat = client.get_events(eventid=exp["alias"]["alias"])
check(len(cat) == 1 and str(cat[0].resource_id) == exp["alias"]["rid"],
      f"alias {exp['alias']['alias']} resolves to {exp['alias']['rid']}")

o = client.get_events(eventid=exp["quality"]["id"])[0].preferred_origin()
q = exp["quality"]
check(o.quality.used_station_count == q["nst"] and abs(o.quality.standard_error - q["rms"]) < 1e-9
      and abs(o.quality.azimuthal_gap - q["gap"]) < 1e-9
      and abs(o.quality.minimum_distance - q["dmin"]) < 1e-9,
      f"origin quality {o.quality}")
check(o.evaluation_mode == q["mode"] and o.evaluation_status == q["status"], "evaluation")

# 204 and 400 map to ObsPy's exceptions.
try:
    client.get_events(starttime=UTCDateTime("1900-01-01"), endtime=UTCDateTime("1900-01-02"))
    check(False, "no data raises FDSNNoDataException")
except FDSNNoDataException:
    check(True, "no data raises FDSNNoDataException")
try:
    client.get_events(eventtype="bad!type")
    check(False, "a bad parameter raises FDSNBadRequestException")
except FDSNBadRequestException as e:
    check("eventtype" in str(e), f"a bad parameter raises FDSNBadRequestException naming it: {e}")

# The text format, read by ObsPy's EVENTTXT reader.
url = f"{base}/fdsnws/event/1/query?format=text&starttime={exp['window'][0]}&endtime={exp['window'][1]}&minmagnitude={exp['minmag']}"
data = urllib.request.urlopen(url, timeout=30).read()
txt = read_events(io.StringIO(data.decode("utf-8")), "EVENTTXT")
check(len(txt) == len(exp["window_events"]), f"EVENTTXT: {len(txt)} events")
by_id = {w["id"]: w for w in exp["window_events"]}
for ev in txt:
    eid = str(ev.resource_id).split("/")[-1]
    w = by_id[eid]
    check(abs(ev.origins[0].time - UTCDateTime(w["time"])) < 1e-3
          and abs(ev.magnitudes[0].mag - w["mag"]) < 1e-9, f"EVENTTXT {eid}")

# The QuakeML of every stored event (USGS, EMSC, odd values) is valid against the XSD.
schema = etree.XMLSchema(etree.parse(xsd_path))
url = f"{base}/fdsnws/event/1/query?starttime=1900-01-01&includedeleted=true"
doc = etree.parse(io.BytesIO(urllib.request.urlopen(url, timeout=60).read()))
valid = schema.validate(doc)
check(valid, "QuakeML valid against the QuakeML 1.2 XSD\n" + str(schema.error_log))
n = len(doc.getroot()[0])
check(n == exp["all_count"], f"QuakeML of all {n} events")
print("ALL OBSPY CHECKS PASSED")
