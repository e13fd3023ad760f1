# The slim kube-proxy image: kube-proxy with iptables (legacy and nft), ipset, conntrack, kmod,
# and nft for releases whose kube-proxy has an nftables mode.
#
# Nothing is compiled here; see kubelet.Dockerfile for how the xtask fills the placeholders.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TARGETARCH
ARG TARGETVARIANT

# @APK_ADD@

COPY rootfs-${TARGETARCH}${TARGETVARIANT}/ /

ENTRYPOINT @ENTRYPOINT@
CMD @CMD@
