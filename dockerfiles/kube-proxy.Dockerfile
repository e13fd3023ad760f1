# The slim kube-proxy image: kube-proxy with iptables behind a wrapper that picks the host's
# backend on first use.
#
# Nothing is compiled, installed or run here; see kubelet.Dockerfile for how the xtask stages
# the tree and fills the placeholders.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TARGETARCH
ARG TARGETVARIANT

COPY rootfs-${TARGETARCH}${TARGETVARIANT}/ /

ENTRYPOINT @ENTRYPOINT@
CMD @CMD@
