"""This project's own pins, in one place: the releases Iluvatar installs and is tested with (issue #42, item 5).

Every Python place that names one of these reads it from here (stacks.releases, the stack model's chart defaults,
plans.certificates, plans.gateways, plans.storage, plans.secrets, plans.backup, plans.monitoring, plans.identity,
plans.gitops, plans.resolver, plans.renovate, plans.k3s, plans.netboot, plans.remote_access, stacks.chart_values,
tools.talos_check), so a bump
is one edit here.
The files a Python import cannot reach (the Go modules' go.mod, tools/upstream/modules.sum, the shipped stacks, the
kept chart schemas and images) are read by tests/stacks/test_pins.py, which names each one that still says another version: a
bump here fails until they follow, and never passes half-done.

`iluvatar versions STACK` prints, for each part, what the stack runs beside what is pinned here.
"""

from __future__ import annotations

# Talos: what `iluvatar init` writes and the shipped stacks run; the Talos check's node build (tools/talos-check,
# node.go.mod) is this release's machinery.
TALOS = "v1.14.1"
# Talos machinery the provider (siderolabs/terraform-provider-talos v0.11.0) is built on, and with it the upgrader and
# the stand-ins (upgrader/go.mod, tools/talos-api, tools/talos-check): the client side, not what the machines run.
TALOS_CLIENT_MACHINERY = "v1.13.0"
# Kubernetes on Arda: the shipped stacks', and the tests' control plane (tools/kube-control-plane: k8s.io/kubernetes).
KUBERNETES = "v1.35.1"
# The Ainur's k3s: the shipped stacks'; its Kubernetes minor is the tests' control plane's.
K3S = "v1.35.8+k3s1"

# Helm charts Iluvatar installs, by chart, at the version it installs (and validates against, tools/upstream).
CHARTS: dict[str, str] = {
    "cilium": "1.18.4",  # arda.cilium.version's default
    "argo-cd": "10.8.0",  # gitops.argocd.version's default
    "cert-manager": "v1.19.2",
    "trust-manager": "v0.25.0",
    "gateway-helm": "v1.9.0",  # Envoy Gateway: the chart, and the release whose CRDs and translator the tests use
    "rook-ceph": "v1.20.4",  # and rook-ceph-cluster, and Rook's own image
    "local-path-provisioner": "v0.0.30",
    "external-secrets": "1.3.2",  # and its image, v1.3.2 (plans.secrets)
    "longhorn": "1.10.1",
    "csi-driver-nfs": "4.12.1",
    "volsync": "0.16.0",
    "headlamp": "v0.44.0",
}

# Manifests Argo CD takes from a Git tag (no chart), by repository.
MANIFESTS: dict[str, str] = {
    "external-snapshotter": "v8.7.0",  # the CSI snapshot controller and its CRDs (plans.backup)
    "kube-prometheus": "v0.18.0",  # plans.monitoring
    "prometheus-operator": "v0.93.0",  # its CRDs (plans/crds) and operator
}

# Programs whose release Iluvatar names itself (an image tag it sets, a package it installs).
APPS: dict[str, str] = {
    "argocd": "v3.5.2",  # what argo-cd chart 10.8.0 ships (quay.io/argoproj/argocd)
    "dex": "v2.45.1",  # ghcr.io/dexidp/dex
    "coredns": "v1.13.1",  # the LAN resolver's (registry.k8s.io/coredns/coredns)
    "renovate": "44.121.2",  # the npm package whose validator checks the scaffold's renovate.json
    "age": "v1.3.1",  # the restore drill builds age's command from its module (plans.drill)
    "victoria-logs": "v1.52.1",  # the log store (plans.logs)
    "otel-collector": "0.165.0",  # the log collector, opentelemetry-collector-contrib
    "vmalert": "v1.151.0",  # the log alerts' evaluator
    "victoriametrics-logs-datasource": "0.30.1",  # Grafana's logs plugin
    "tailscale": "1.102.3",  # the operator's chart and images, the subnet router (plans.remote_access; tools/tailscale)
    "headscale": "0.27.1",  # ghcr.io/juanfont/headscale (plans.remote_access)
    "ipxe": "1.21.1+git20250501.dad20602+dfsg-1",  # Debian's ipxe package the netboot serves (plans.netboot.cache)
    "nfs-ganesha": "4.3-2",  # Debian 12's, the netbooting maiar's NFS server (plans.netboot.pi_pods; DEBS below)
}

# Images Iluvatar runs at a tag it pins itself (never a chart's default, never latest).
IMAGES: dict[str, str] = {
    "busybox": "docker.io/library/busybox:1.37.0",  # local-path-provisioner's helper
    "talos-backup": "ghcr.io/siderolabs/talos-backup:v0.1.0-beta.3",
    "node-exporter": "quay.io/prometheus/node-exporter:v1.11.1",
    "kube-vip": "ghcr.io/kube-vip/kube-vip:v0.9.2",
    "dnsmasq": "quay.io/poseidon/dnsmasq:v0.5.0-51-gc8a9de4",
    "nginx": "docker.io/library/nginx:1.28.0-alpine",
    "curl": "docker.io/curlimages/curl:8.11.1",
    "debian": "docker.io/library/debian:trixie-20250908-slim",
    "debian-bookworm": "docker.io/library/debian:bookworm-20250908-slim",  # the Pis' NFS server pod
    # The restore drill's (plans.drill).
    "restic": "docker.io/restic/restic:0.18.1",
    "curl-drill": "docker.io/curlimages/curl:8.17.0",
    "golang": "docker.io/library/golang:1.26.8-alpine",
    # etcdutl for each etcd minor the drill restores (stacks.data.ETCDUTL): Kubernetes' image of the etcd the tests'
    # control planes run (tools/kube-control-plane), and the image Talos v1.14.1 runs for its own etcd.
    "etcd-3.6": "registry.k8s.io/etcd:3.6.5-0",
    "etcd-3.7": "registry.k8s.io/etcd:3.7.1",
}

# Each chart's Go module in tools/upstream/modules.sum, where its chart is one (argo-cd's is not: argo-helm at a commit).
CHART_MODULES: dict[str, str] = {
    "cilium": "github.com/cilium/cilium",
    "cert-manager": "github.com/cert-manager/cert-manager",
    "trust-manager": "github.com/cert-manager/trust-manager",
    "gateway-helm": "github.com/envoyproxy/gateway",
    "rook-ceph": "github.com/rook/rook",
    "local-path-provisioner": "github.com/rancher/local-path-provisioner",
    "external-secrets": "github.com/external-secrets/external-secrets",
    "volsync": "github.com/backube/volsync",
    "headlamp": "github.com/kubernetes-sigs/headlamp",
}
# Each Git manifest source's Go module in tools/upstream/modules.sum.
MANIFEST_MODULES: dict[str, str] = {
    "external-snapshotter": "github.com/kubernetes-csi/external-snapshotter/v8",
    "kube-prometheus": "github.com/prometheus-operator/kube-prometheus",
    "prometheus-operator": "github.com/prometheus-operator/prometheus-operator",
}


def go_version(version: str) -> str:
    """A chart version as its Go module tags it (`1.18.4` is `v1.18.4`)."""
    return version if version.startswith("v") else f"v{version}"


# Debian packages the Pis' pods install (plans.netboot.debs), as snapshot.debian.org keeps Debian's archive at
# DEBIAN_SNAPSHOT: a file stays at its URL there after the archive moves on (the live archive drops a version at the next
# point release, review 41-1 M5), and each is checked by its SHA-256 before it is kept. From Debian 12.15's arm64 index
# (main/binary-arm64/Packages.xz, SHA-256 2ddb1737692e8c45c53e8d57c0ce4cd21c78c5703b830c3226b1423566a06c00 as its
# Release of 2026-07-11 says; unchanged when read on 2026-11-26, so the snapshot of 2026-08-01 holds it). Each set is
# the package and every one it needs that IMAGES["debian-bookworm"] lacks, no recommends: `python -m tools.debian_closure`
# computes it with apt from that index, and tests/plans/test_netboot_debs.py holds it to the kept extract
# (tests/fixtures/debian/bookworm-arm64.Packages).
DEBIAN_SNAPSHOT = "20260801T000000Z"
DEBS: dict[str, dict[str, str]] = {
    # NFS-Ganesha with its VFS backend (plans.netboot.pi_pods, the pi-nfs pod).
    "pi-nfs": {
        "pool/main/d/dbus/libdbus-1-3_1.14.10-1~deb12u1_arm64.deb": "2a423794f44ee756f70fda67c6e47b15afe3dd22cd69e51f5d14d2ec9538f806",
        "pool/main/d/dbus/dbus-bin_1.14.10-1~deb12u1_arm64.deb": "021cdcbd12add5edb56bb3227048308154c607361094ca05d1ba442f98ab466a",
        "pool/main/d/dbus/dbus-session-bus-common_1.14.10-1~deb12u1_all.deb": "b19cb8e3581d6b09ff3f46fee23de2813811353228c666c9d1ad885598062e43",
        "pool/main/a/apparmor/libapparmor1_3.0.8-3_arm64.deb": "ea2e8b0f63cf35acc93f2f24784bd4b1784133837f31e6c1f2fd2767e252831b",
        "pool/main/e/expat/libexpat1_2.5.0-1+deb12u2_arm64.deb": "8dc1976735acf825e3a922d82f171e20feec7394da2b8c616091983e38706275",
        "pool/main/d/dbus/dbus-daemon_1.14.10-1~deb12u1_arm64.deb": "04aa8cb00681189675046bd05dc4f29b587583c8b911c971c86989b4e8d9782d",
        "pool/main/d/dbus/dbus-system-bus-common_1.14.10-1~deb12u1_all.deb": "2111d3d0c98ac68ee973274058447e6fab1c359fec1d4bb195f5fcc5833a19e2",
        "pool/main/d/dbus/dbus_1.14.10-1~deb12u1_arm64.deb": "ecff25d50f09d05f0a378769b36996272dc6a6da55b88005af5fb6c3a7fa5156",
        "pool/main/l/lvm2/dmsetup_1.02.185-2_arm64.deb": "5c838de946282ee64c8483886c8bc68276d3fc5a9a28ce23bbfa6577fe0ddac2",
        "pool/main/l/lvm2/libdevmapper1.02.1_1.02.185-2_arm64.deb": "0b4ffad17467a043dd1cb9cdbbcf8cbaf2ab88e902ae4c110a0b08d74753589b",
        "pool/main/libe/libevent/libevent-core-2.1-7_2.1.12-stable-8_arm64.deb": "b2ffdb6e02105a89fb1f306a6736be3cd302cdb225dc6d48f2e623baaf123efe",
        "pool/main/k/krb5/libkrb5support0_1.20.1-2+deb12u5_arm64.deb": "3043fd4a54b945a1b503170749527f825dcfc7add2f8bf5abb4a329deeb48f4a",
        "pool/main/k/krb5/libk5crypto3_1.20.1-2+deb12u5_arm64.deb": "8ae2c31cde0b3e6f80c573a495b0f90bf6d9efb4455d900728278bb54d9092e5",
        "pool/main/k/keyutils/libkeyutils1_1.6.3-2_arm64.deb": "aac46cb6faec4e737502b3c2290b7b02f8ba04e8accd5af7fd07934df0c867b1",
        "pool/main/o/openssl/libssl3_3.0.20-1~deb12u2_arm64.deb": "a256e03cc3abd7243ac5c6ee91a9deb56478221ef0d3c2b0748551e13140c0bf",
        "pool/main/k/krb5/libkrb5-3_1.20.1-2+deb12u5_arm64.deb": "c3c7227f5db903a7a8b8936d47d1d79643edcda36365c4c992e1a96bcc2d4c7e",
        "pool/main/k/krb5/libgssapi-krb5-2_1.20.1-2+deb12u5_arm64.deb": "a00678963f692a929312968f19b77a61a8fc0011690d7dc909a8a2c4810fc7b3",
        "pool/main/c/cyrus-sasl2/libsasl2-modules-db_2.1.28+dfsg-10_arm64.deb": "56d9c35ac6729b02f78900175557dd36bef26611dab89584f29da15631628869",
        "pool/main/c/cyrus-sasl2/libsasl2-2_2.1.28+dfsg-10_arm64.deb": "61dcbb6560e2eb20bff256f1b445ac9af13aa61c6a6ae115ad8cb96c9c50ea38",
        "pool/main/o/openldap/libldap-2.5-0_2.5.13+dfsg-5_arm64.deb": "71e6ae4291a20db999c62cd0a4f30a92a799c46b99205d5e787d4acd7c343b91",
        "pool/main/n/nfs-utils/libnfsidmap1_2.6.2-4+deb12u1_arm64.deb": "2758ea4c6ec91304345a3a4756e685122ec498ccbe16d7b7eac54ae9853e78fc",
        "pool/main/libt/libtirpc/libtirpc-common_1.3.3+ds-1_all.deb": "3e3ef129b4bf61513144236e15e1b4ec57fa5ae3dc8a72137abdbefb7a63af85",
        "pool/main/libt/libtirpc/libtirpc3_1.3.3+ds-1_arm64.deb": "deaf9ea54f74cab6690b4bc0b427f05cbe62cc073580d84f5f18a8d9e2ece401",
        "pool/main/libn/libnsl/libnsl2_1.3.0-2_arm64.deb": "8f9ba58b219779b43c4ccc78c79b0a23f721fc96323c202abb31e02f942104b3",
        "pool/main/t/tcp-wrappers/libwrap0_7.6.q-32_arm64.deb": "c5f02a234b481e7016d10188822b8d84420cc5978db19c0d253eb222452cffe7",
        "pool/main/r/rpcbind/rpcbind_1.2.6-6+b1_arm64.deb": "84e1507ebf1bdae7a16ad2493a095a08aa43772dd47b64fc5dd247f4130a8a42",
        "pool/main/s/sensible-utils/sensible-utils_0.0.17+nmu1_all.deb": "e0e66f783996ec4670ed5041c446160ec671c723d4be47d3bc27af93c2958a76",
        "pool/main/u/ucf/ucf_3.0043+nmu1+deb12u1_all.deb": "928f2d5d327ef0f8d1b9c03a506134f56564cd2acf3e9f041df3dbdc68b00525",
        "pool/main/k/keyutils/keyutils_1.6.3-2_arm64.deb": "e1fb71156189121a688aa07cef6729c04b73b7508ed12782ebd92fe39b3eb216",
        "pool/main/p/python3.11/libpython3.11-minimal_3.11.2-6+deb12u8_arm64.deb": "c48bac178c0fc43a2bf8ace784c762b5ee83e2b981894a991dc3ccfd3ec7cd4b",
        "pool/main/p/python3.11/python3.11-minimal_3.11.2-6+deb12u8_arm64.deb": "6a07dd571f1a15af2f855d64571766fe44b73a57cc3b5ca79502bc89156a5e12",
        "pool/main/p/python3-defaults/python3-minimal_3.11.2-1+b1_arm64.deb": "f01c94963ace8a6fec59300427c95fc4ac204d752567dd2e4b36ee930755110f",
        "pool/main/m/media-types/media-types_10.0.0_all.deb": "aaa46dcb3b39948ae2e0fdb72cfcb2f48c0b59f19785a3da8045c05eb19955dd",
        "pool/main/n/ncurses/libncursesw6_6.4-4_arm64.deb": "cf32cb6751718872c6def448b82211eec494f688e2f1a3e6c71bfdaf6b0722c5",
        "pool/main/r/readline/readline-common_8.2-1.3_all.deb": "69317523fe56429aa361545416ad339d138c1500e5a604856a80dd9074b4e35c",
        "pool/main/r/readline/libreadline8_8.2-1.3_arm64.deb": "f3b162b7c1e05430607e792ebdbfc417cbd1f1d32cf83664133ae63d811a72d2",
        "pool/main/s/sqlite3/libsqlite3-0_3.40.1-2+deb12u2_arm64.deb": "a690f7f2aa6435bd1fd7cbbd2216acb9acbb8c48c9721f2c195766375439eb13",
        "pool/main/p/python3.11/libpython3.11-stdlib_3.11.2-6+deb12u8_arm64.deb": "e79876de55c6c2dca10d044b2fa69ccd863950ea01714220c1982d16008105f9",
        "pool/main/p/python3.11/python3.11_3.11.2-6+deb12u8_arm64.deb": "76b445c9428db92fb8f17a322a99e3e54b3f8d0eeac76d80d5d6fff95f5dd526",
        "pool/main/p/python3-defaults/libpython3-stdlib_3.11.2-1+b1_arm64.deb": "3ceea13a9d2eff6e850d47b4f03ebd0162acb2aa5646a84ccbe77783be104302",
        "pool/main/p/python3-defaults/python3_3.11.2-1+b1_arm64.deb": "d31a6f8bdea49711f221baee0e27197c314d0cbe748c020262d32650aca5f017",
        "pool/main/n/nfs-utils/nfs-common_2.6.2-4+deb12u1_arm64.deb": "0aa4400d27550062367f71f5e920d9ec9d3d99081d145621a7035c782789058d",
        "pool/main/libb/libbsd/libbsd0_0.11.7-2_arm64.deb": "ef00f132ddd268ee67d756998723ee18543db27ab34930c0a9f1cff75cf55382",
        "pool/main/libu/liburcu/liburcu8_0.13.2-1_arm64.deb": "b9b168187de755b0e71bac8171ef08b30b3e24bd15ee40a7a445560242c794d7",
        "pool/main/n/ntirpc/libntirpc4.3_4.3-2_arm64.deb": "761a5cc9ec501f5d08a4553f26df639ddd5c73144571d14dba39498bf1a91398",
        "pool/main/s/samba/libwbclient0_4.17.12+dfsg-0+deb12u4_arm64.deb": "4a4f54595e5613228542925d069ee27e5d9ae62461c8b4515bf963888bcccfe4",
        "pool/main/n/nfs-ganesha/nfs-ganesha_4.3-2_arm64.deb": "2880142cd6493d3267bbab284afac5ef2d88b4a17ac631d87340e35317315740",
        "pool/main/n/nfs-ganesha/nfs-ganesha-vfs_4.3-2_arm64.deb": "c34b995350aff142cff4fb66d7647529f976bb4e1f0e640268758fc13f480b07",
    },
    # The Pi image builder's tools (plans.netboot.pi_image.BUILDER_PACKAGES).
    "pi-image": {
        "pool/main/c/cpio/cpio_2.13+dfsg-7.1_arm64.deb": "9af6bd9db2643d0422cdd77ec2df50e0ca11da78456321cbeaac445f998f96fd",
        "pool/main/u/util-linux/libfdisk1_2.38.1-5+deb12u3_arm64.deb": "386a52631ca076b25069ab50e55f9b6d544dba1a386866af0ce9c26165417138",
        "pool/main/n/ncurses/libncursesw6_6.4-4_arm64.deb": "cf32cb6751718872c6def448b82211eec494f688e2f1a3e6c71bfdaf6b0722c5",
        "pool/main/r/readline/readline-common_8.2-1.3_all.deb": "69317523fe56429aa361545416ad339d138c1500e5a604856a80dd9074b4e35c",
        "pool/main/r/readline/libreadline8_8.2-1.3_arm64.deb": "f3b162b7c1e05430607e792ebdbfc417cbd1f1d32cf83664133ae63d811a72d2",
        "pool/main/u/util-linux/fdisk_2.38.1-5+deb12u3_arm64.deb": "395ee3ba818d07ee5b8a9aec90b3b053040c6f3df8bd78ab034be37916fabd1a",
        "pool/main/o/openssl/libssl3_3.0.20-1~deb12u2_arm64.deb": "a256e03cc3abd7243ac5c6ee91a9deb56478221ef0d3c2b0748551e13140c0bf",
        "pool/main/o/openssl/openssl_3.0.20-1~deb12u2_arm64.deb": "e7ba824de1e659c12e81f885bc0757a50c4d7a9f71de02687ad63d5a9e936e00",
        "pool/main/c/ca-certificates/ca-certificates_20230311+deb12u1_all.deb": "0d5f444f594e48c1e16a41d8fc628a09b24c658916a1274025c2330f2a802bed",
        "pool/main/x/xz-utils/xz-utils_5.4.1-1+deb12u1_arm64.deb": "c75a1418753c03c3f8c544222381102da317bc42b251a12f46ad0227964a8830",
        "pool/main/b/brotli/libbrotli1_1.0.9-2+b6_arm64.deb": "3137de7f71952e710ee9f0df05026b3c6f463be9369a502d57c7696732f1ed22",
        "pool/main/k/krb5/libkrb5support0_1.20.1-2+deb12u5_arm64.deb": "3043fd4a54b945a1b503170749527f825dcfc7add2f8bf5abb4a329deeb48f4a",
        "pool/main/k/krb5/libk5crypto3_1.20.1-2+deb12u5_arm64.deb": "8ae2c31cde0b3e6f80c573a495b0f90bf6d9efb4455d900728278bb54d9092e5",
        "pool/main/k/keyutils/libkeyutils1_1.6.3-2_arm64.deb": "aac46cb6faec4e737502b3c2290b7b02f8ba04e8accd5af7fd07934df0c867b1",
        "pool/main/k/krb5/libkrb5-3_1.20.1-2+deb12u5_arm64.deb": "c3c7227f5db903a7a8b8936d47d1d79643edcda36365c4c992e1a96bcc2d4c7e",
        "pool/main/k/krb5/libgssapi-krb5-2_1.20.1-2+deb12u5_arm64.deb": "a00678963f692a929312968f19b77a61a8fc0011690d7dc909a8a2c4810fc7b3",
        "pool/main/c/cyrus-sasl2/libsasl2-modules-db_2.1.28+dfsg-10_arm64.deb": "56d9c35ac6729b02f78900175557dd36bef26611dab89584f29da15631628869",
        "pool/main/c/cyrus-sasl2/libsasl2-2_2.1.28+dfsg-10_arm64.deb": "61dcbb6560e2eb20bff256f1b445ac9af13aa61c6a6ae115ad8cb96c9c50ea38",
        "pool/main/o/openldap/libldap-2.5-0_2.5.13+dfsg-5_arm64.deb": "71e6ae4291a20db999c62cd0a4f30a92a799c46b99205d5e787d4acd7c343b91",
        "pool/main/n/nghttp2/libnghttp2-14_1.52.0-1+deb12u3_arm64.deb": "7767833033739adb2e2e374f2c4b36134d9f36fcdfe8e2aab7029bf850146da9",
        "pool/main/libp/libpsl/libpsl5_0.21.2-1_arm64.deb": "90a68e4a6d9eb95abee32595762dbf67974f13c158e4ce4a05c7c2b54440db73",
        "pool/main/r/rtmpdump/librtmp1_2.4+20151223.gitfa8646d.1-2+b2_arm64.deb": "a3a1a6e4b02bcd3254e932b1972ed744082fd7dd5cc1545eec3dd3d539ce6c93",
        "pool/main/libs/libssh2/libssh2-1_1.10.0-3+b1_arm64.deb": "390538001122ff03bdabe3689f5b13dafbf2012dd55e3e1e26bd7a6109717250",
        "pool/main/c/curl/libcurl4_7.88.1-10+deb12u15_arm64.deb": "e54bdd269c960b643ded903c3dbde36fe5d4d5f5b6389b47a0344d4a711cf70a",
        "pool/main/c/curl/curl_7.88.1-10+deb12u15_arm64.deb": "880d20cb636d2c36b2f57c58ab284b442a1680365b488d3e696c147c4d84ef25",
        "pool/main/m/mtools/mtools_4.0.33-1+really4.0.32-1_arm64.deb": "2c5a4eb80c2000f01ae9f9ab6054428b0d2beaaf995d10cd3d6dd2113ba88020",
        "pool/main/libz/libzstd/zstd_1.5.4+dfsg2-5_arm64.deb": "97a58383b0ad55cc8183e59cbb112f2eb55c3dc1e90de816fa5cfb983d5c2ff0",
    },
    # iPXE's binaries the netboot serves (plans.netboot.cache), unpacked by the netboot-cache pod, whose image is Debian 13
    # (IMAGES["debian"]): from Debian 13.8's arm64 index (main/binary-arm64/Packages.xz, SHA-256
    # 5b9a010e6730e4019e90fcb81c92ad59f061955890d691b7d111637d3f8d3dab as its Release of 2026-11-21 says). Its version
    # is trixie's release one (no +deb13u), in the archive since 2025-08-09, so the snapshot of 2026-08-01 holds it; its
    # closure is the file alone (no Depends; grub-ipxe is only recommended), tests/fixtures/debian/trixie-arm64.Packages.
    # The very file tools.debian unpacks for the firmware tests that boot it (tests/stacks/test_pins.py).
    "netboot-ipxe": {
        "pool/main/i/ipxe/ipxe_1.21.1+git20250501.dad20602+dfsg-1_all.deb": "eeaca79dbde0fb86c102bf1d362c6f6a67ed0ddab38b3dd12e1b332339f5dd99",
    },
}
