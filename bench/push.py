#!/usr/bin/env python3
"""Pushes N images straight to a registry over its API (no docker needed):
bench/imgI:1, each of three blobs, a layer that all of them share (256 KiB),
and a layer (64 KiB) and a config of its own. With TAGS=T in the
environment, each repository gets the tags 1 to T: its layer is shared by
its tags, and each tag has a config of its own.

Usage: [TAGS=T] push.py BASE_URL N [CA_FILE]    (BASE_URL: http://HOST:PORT or https://...)
"""
import hashlib
import json
import os
import ssl
import sys
import urllib.request

base, n = sys.argv[1], int(sys.argv[2])
context = ssl.create_default_context(cafile=sys.argv[3]) if len(sys.argv) > 3 else None
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
)


def call(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return opener.open(req)


def blob(repo, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = call("POST", f"{base}/v2/{repo}/blobs/uploads/").headers["Location"]
    if not loc.startswith("http"):
        loc = f"{base}{loc}"
    sep = "&" if "?" in loc else "?"
    call("PUT", f"{loc}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


LAYER = "application/vnd.oci.image.layer.v1.tar"
shared = os.urandom(256 << 10)
tags = int(os.environ.get("TAGS", "1"))
for i, tag in ((i, t) for i in range(1, n + 1) for t in range(1, tags + 1)):
    repo = f"bench/img{i}"
    if tag == 1:
        own = os.urandom(64 << 10)
    layers = [blob(repo, shared, LAYER), blob(repo, own, LAYER)]
    fields = {"n": i} if tag == 1 else {"n": i, "tag": tag}
    config = json.dumps({
        "architecture": "amd64", "os": "linux", **fields,
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
    }).encode()
    cfg = blob(repo, config, "application/vnd.oci.image.config.v1+json")
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": cfg, "layers": layers,
    }).encode()
    call("PUT", f"{base}/v2/{repo}/manifests/{tag}", manifest,
         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
