# The kubelet images: kubelet alone, or with CNI plugins, kubeadm and crictl.
#
# Nothing is compiled here. `cargo xtask image` stages the prebuilt, verified binaries of each
# platform under rootfs-<arch><variant>/ in the build context, fills in the placeholders below
# (the packages, ENTRYPOINT and CMD depend on the Kubernetes release), and builds one platform
# at a time so the index lists them in a fixed order.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TARGETARCH
ARG TARGETVARIANT

# @APK_ADD@

COPY rootfs-${TARGETARCH}${TARGETVARIANT}/ /

ENTRYPOINT @ENTRYPOINT@
CMD @CMD@
