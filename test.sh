#!/bin/sh
# Sample syncer script: print the images to mirror, one per line.
# Replace with anything that lists images: a query to a release API,
# 'helm template ... | grep image:', a file kept in git.
cat <<'LIST'
# the images the sample config mirrors
alpine:3.19
docker.io/library/busybox:1.36
LIST
