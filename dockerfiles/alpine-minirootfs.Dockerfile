# An Alpine base image from Alpine's official minimal root filesystems, for builders that cannot
# pull alpine from a registry (the tests use the fixtures in ../shared/fixtures).
# `cargo xtask base` checks the tarballs against SHA512SUMS before building.
FROM scratch
ARG TARGETARCH
ARG TARGETVARIANT
ADD alpine-minirootfs-${TARGETARCH}${TARGETVARIANT}.tar.gz /
CMD ["/bin/sh"]
