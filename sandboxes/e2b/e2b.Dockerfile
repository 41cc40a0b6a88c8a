# e2b template for fst-agent's e2b backend (see README.md). Same contract as sandboxes/docker/Dockerfile:
# python3, coreutils `timeout`, a shell with `ulimit`, and the template's unprivileged `user`.
# e2b's base image already has the `user` account (home /home/user) that commands run as.
FROM e2bdev/base:latest

# python3 + coreutils (timeout, head, date) are what a run needs; nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 coreutils procps \
 && rm -rf /var/lib/apt/lists/*

# the session work dir; the backend also creates it on demand
RUN mkdir -p /home/user/workspace && chown user:user /home/user/workspace && chmod 0700 /home/user/workspace
