#!/bin/sh
# Attack: open a raw IP socket (the primitive of sniffers and packet crafting);
# busybox ping as root does, with Docker's default CAP_NET_RAW. Expected: raw_socket.
sleep "${E2E_DELAY:-0}"
ping -c 1 -W 1 127.0.0.1
