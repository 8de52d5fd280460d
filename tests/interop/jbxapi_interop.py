"""Runs the official Python client, jbxapi 3.25.0, against jbxd's simulator.

Started by tests/it/interop.rs with JBX_API_URL, JBX_API_KEY, JBXD_SIM_CONTROL (the simulator's
control URL) and JBXD_WORK (a scratch directory). Exits non-zero with a message on the first
mismatch. Covers: submit (small and chunked), submit URL, info, lists, search, download, and the
CLI's error exit codes (100 + Joe error code).
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile

import jbxapi

URL = os.environ["JBX_API_URL"]
KEY = os.environ["JBX_API_KEY"]
CONTROL = os.environ["JBXD_SIM_CONTROL"]
WORK = os.environ["JBXD_WORK"]
CLI = os.path.join(os.path.dirname(sys.executable), "jbxapi")


def check(condition, message):
    if not condition:
        sys.exit("interop failure: " + message)


def control(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(CONTROL + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return resp.read()


def wait_finished(joe, submission_id, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        info = joe.submission_info(submission_id)
        if info["status"] == "finished":
            return info
        control("/_sim/clock", {"advance_seconds": 60})
        time.sleep(0.05)
    sys.exit("interop failure: submission %s did not finish" % submission_id)


joe = jbxapi.JoeSandbox(apikey=KEY, apiurl=URL, accept_tac=True, timeout=30)

# Server and account.
check(joe.server_online() == {"online": True}, "server_online")
check("queuesize" in joe.server_info(), "server_info")
check(any(s["name"] for s in joe.server_systems()), "server_systems")
quota = joe.account_info()["quota"]["daily"]
check(quota["remaining"] <= quota["limit"], "account_info quota")

# Small sample: jbxapi uploads it chunked by default (one chunk).
small = os.path.join(WORK, "invoice.txt")
with open(small, "wb") as f:
    f.write(b"JBXD-MALICIOUS interop sample\n")
with open(small, "rb") as f:
    small_id = joe.submit_sample(f, params={"comments": "interop-small", "systems": ["w10x64_office"]})["submission_id"]

# Chunked: 21 MiB -> 3 chunks of 10 MiB, the last 1 MiB.
big = os.path.join(WORK, "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(21 * 1024 * 1024))
with open(big, "rb") as f:
    big_id = joe.submit_sample(f, params={"comments": "interop-big"})["submission_id"]

# Non-chunked (multipart sample part) and URL submissions.
with open(small, "rb") as f:
    plain_id = joe.submit_sample(f, _chunked_upload=False)["submission_id"]
url_id = joe.submit_url("https://example.com/interop", params={"internet-access": True})["submission_id"]

infos = {sid: wait_finished(joe, sid) for sid in (small_id, big_id, plain_id, url_id)}
small_info = infos[small_id]
check(small_info["most_relevant_analysis"]["detection"] == "malicious", "verdict of the small sample")
webid = small_info["most_relevant_analysis"]["webid"]
analysis = joe.analysis_info(webid)
check(analysis["filename"] == "invoice.txt", "file name of the small sample: %r" % analysis["filename"])
big_analysis = infos[big_id]["analyses"][0]
check(big_analysis["sha256"] == __import__("hashlib").sha256(open(big, "rb").read()).hexdigest(),
      "sha256 of the chunked upload")
check(infos[url_id]["analyses"][0]["filename"] == "https://example.com/interop", "URL analysis filename")

# Lists (paginated) and search.
submissions = [s["submission_id"] for s in joe.submission_list()]
for sid in (small_id, big_id, plain_id, url_id):
    check(sid in submissions, "submission_list contains %s" % sid)
webids = [a["webid"] for a in joe.analysis_list_paged()]
check(webid in webids, "analysis_list_paged contains %s" % webid)
check(len(joe.analysis_list()) == len(webids), "analysis_list and analysis_list_paged agree")
hits = joe.analysis_search("interop-small")
check([h["webid"] for h in hits] == [webid], "search by comment: %r" % hits)
# The small sample went up twice (chunked and plain): both analyses share its sha256.
check(webid in [h["webid"] for h in joe.analysis_search(analysis["sha256"])], "search by sha256")

# Downloads: jbxapi slices the Content-Disposition name [1:-2], so the trailing ';' must be there.
name, data = joe.analysis_download(webid, "html")
check(name.endswith(".html") and not name.endswith('"'), "html download name %r" % name)
check(data.startswith(b"<"), "html body")
name, data = joe.analysis_download(webid, "irjsonfixed")
report = json.loads(data)
check(report["analysis"]["detection"]["malicious"] is True, "irjsonfixed detection")
name, data = joe.analysis_download(webid, "bins")
bins = os.path.join(WORK, name)
with open(bins, "wb") as f:
    f.write(data)
with zipfile.ZipFile(bins) as z:
    members = z.namelist()
    check(len(members) >= 1, "bins archive has members")
    z.read(members[0], pwd=b"infected")

# Errors as jbxapi classes.
try:
    joe.analysis_info("999999999")
    sys.exit("interop failure: unknown webid did not fail")
except jbxapi.InvalidParameterError:
    pass
try:
    jbxapi.JoeSandbox(apikey="wrong-key", apiurl=URL).server_info()
    sys.exit("interop failure: wrong key did not fail")
except jbxapi.InvalidApiKeyError:
    pass


# The CLI's exit codes: 100 + the Joe error code.
def cli(*args, key=KEY):
    env = dict(os.environ, JBX_API_KEY=key, JBX_API_URL=URL, JBX_ACCEPT_TAC="1")
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True)


ok = cli("analysis", "info", webid)
check(ok.returncode == 0 and json.loads(ok.stdout)["webid"] == webid, "CLI analysis info: %s" % ok.stderr)
check(cli("analysis", "info", "999999999").returncode == 103, "CLI exit code for an unknown webid")
check(cli("server", "info", key="wrong-key").returncode == 104, "CLI exit code for a wrong key")
control("/_sim/maintenance", {"on": True})
try:
    check(cli("server", "online").returncode == 0, "server online during maintenance")
    check(cli("server", "info").returncode == 105, "CLI exit code during maintenance")
finally:
    control("/_sim/maintenance", {"on": False})
sub = cli("submit", small)
check(sub.returncode == 0 and "submission_id" in json.loads(sub.stdout), "CLI submit: %s" % sub.stderr)

print("jbxapi interop: all checks passed")
