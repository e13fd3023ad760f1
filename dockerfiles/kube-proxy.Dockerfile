# The slim kube-proxy image: kube-proxy with iptables (legacy and nft), ipset, conntrack, kmod,
# and nft for releases whose kube-proxy has an nftables mode.
#
# Nothing is compiled here; see kubelet.Dockerfile for how the xtask fills the placeholders.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TARGETARCH
ARG TARGETVARIANT

# The wrapper comes first: the package step links iptables and ip6tables to it, so the
# backend (legacy or nft) is chosen on first use, on the node, to match the host's.
COPY rootfs-${TARGETARCH}${TARGETVARIANT}/ /

# @APK_ADD@

ENTRYPOINT @ENTRYPOINT@
CMD @CMD@
