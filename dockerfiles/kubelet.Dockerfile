# The kubelet images: kubelet alone, or with CNI plugins, kubeadm and crictl.
#
# Nothing is compiled or installed here, and nothing runs: `cargo xtask image` stages each
# platform's prebuilt, verified binaries and host tools under rootfs-<arch><variant>/ in the
# build context, fills in ENTRYPOINT and CMD (they depend on the Kubernetes release), and the
# builder copies that tree onto the base. No step runs a program of the image's architecture,
# so no builder needs qemu, and no step reaches a package mirror.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TARGETARCH
ARG TARGETVARIANT

COPY rootfs-${TARGETARCH}${TARGETVARIANT}/ /

ENTRYPOINT @ENTRYPOINT@
CMD @CMD@
