"""A scripted Raspberry Pi 4 / Pi 5 EEPROM bootloader: the DHCP and TFTP packets it sends when it netboots.

Run inside a client network namespace (`python -m tests.netns.pi_bootloader ...`); prints one JSON document
with every DHCP answer it saw and what each TFTP read got. What it sends, and from where each field comes:

- DHCPDISCOVER from 0.0.0.0:68 to 255.255.255.255:67, flags 0 (no broadcast bit), with option 53 (discover),
  55 (the parameter list: 43 vendor options, 60 vendor class, 67 boot file, 128-135, 66 TFTP server),
  93 client architecture 0, 94 UNDI 1.2.1, 97 the client GUID and 60 "PXEClient:Arch:00000:UNDI:002001":
  the capture in raspberrypi/documentation, documentation/asciidoc/computers/raspberry-pi/boot-net.adoc
  ("DHCP Request / Reply"). That capture is a Pi 3's boot ROM; the Pi 4 and 5 EEPROM bootloaders send the same
  PXE-style request (ibid., option 60 "PXEClient:Arch:00000:UNDI:002001"; tinkerbell docs/technical/
  RASPBERRY_PI5.md, "How Raspberry Pi 5 netboot works"), with option 97 as eeprom-bootloader.adoc's
  DHCP_OPTION97 says: the FourCC `RPi4` (0x34695052) or `RPi5` (0x35695052), the board revision, the low 4
  bytes of the MAC and the 4-byte serial. The exact parameter list of a Pi 4/5 is not published; this one is the capture's.
- It ignores any answer whose option 43 lacks "Raspberry Pi Boot" (eeprom-bootloader.adoc, PXE_OPTION43; boot-net.adoc:
  "The important part of the reply is the Vendor-Option Option 43"), takes its address from an offer that has one
  (a ProxyDHCP answer has none: rpi-eeprom issue #376's UART log shows a Pi 4 taking the address from the
  router's OFFER and `tftp 192.168.1.3` from dnsmasq's proxy OFFER), asks for it (REQUEST, then ACK), and reads TFTP
  from the server the option-43 answer names (siaddr; option 66 when siaddr is empty).
- TFTP: a read request per file, octet mode, under the serial prefix (TFTP_PREFIX=0: `9ffefdef/start4.elf`,
  eeprom-bootloader.adoc). A Pi 4 first reads `<serial>/start4.elf` and drops the prefix if neither start4.elf nor
  start.elf is there (ibid., TFTP_PREFIX); the test names the files to read.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

PXE_VENDOR = b"PXEClient:Arch:00000:UNDI:002001"
RPI_BOOT = b"Raspberry Pi Boot"
FOURCC = {4: 0x34695052, 5: 0x35695052}
NO_ADDRESS = "0.0.0.0"  # noqa: S104 - BOOTP's empty address field, not a socket
# Board revisions as eeprom-bootloader.adoc's DHCP_OPTION97 examples give them (a Pi 4 Model B, a Pi 5).
REVISION = {4: 0x00C03111, 5: 0x00D04170}
PARAMS = bytes([43, 60, 67, 128, 129, 130, 131, 132, 133, 134, 135, 66])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _frame(mac: bytes, payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP from 0.0.0.0:68 to 255.255.255.255:67, as a client with no address sends it."""
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 128, 17, 0, b"\0" * 4, b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", 68, 67, udp_len, 0) + payload  # no UDP checksum, as the capture shows ("[no cksum]")
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def _options(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([code, len(value)]) + value for code, value in items) + b"\xff"


def _bootp(xid: int, mac: bytes, options: list[tuple[int, bytes]]) -> bytes:
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0, b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"", b"")
    return head + b"\x63\x82\x53\x63" + _options(options)


def _guid(model: int, mac: bytes, serial: str) -> bytes:
    # Option 97: type 0, then 16 bytes (eeprom-bootloader.adoc, DHCP_OPTION97; the FourCC is little-endian there).
    return b"\0" + struct.pack("<II", FOURCC[model], REVISION[model]) + mac[2:] + bytes.fromhex(serial)


def request_options(
    model: int,
    mac: bytes,
    serial: str,
    kind: int,
    extra: Sequence[tuple[int, bytes]] = (),
    guid: bytes | None = None,
) -> list[tuple[int, bytes]]:
    return [
        (53, bytes([kind])),
        *extra,
        (55, PARAMS),
        (93, b"\0\0"),
        (94, b"\x01\x02\x01"),
        (97, _guid(model, mac, serial) if guid is None else guid),
        (60, PXE_VENDOR),
    ]


def _parse(packet: bytes) -> dict[str, Any] | None:
    """A BOOTP reply out of an Ethernet frame to port 68, or None."""
    if len(packet) < 14 + 20 + 8 + 240 or packet[12:14] != b"\x08\x00" or packet[23] != 17:
        return None
    ihl = (packet[14] & 0x0F) * 4
    udp = packet[14 + ihl :]
    if struct.unpack("!H", udp[2:4])[0] != 68:
        return None
    bootp = udp[8:]
    if bootp[0] != 2:
        return None
    xid = struct.unpack("!I", bootp[4:8])[0]
    options: dict[int, bytes] = {}
    i = 240
    while i < len(bootp) and bootp[i] != 255:
        if bootp[i] == 0:
            i += 1
            continue
        code, length = bootp[i], bootp[i + 1]
        options[code] = bootp[i + 2 : i + 2 + length]
        i += 2 + length
    return {
        "xid": xid,
        "from": socket.inet_ntoa(packet[14 + 12 : 14 + 16]),
        "yiaddr": socket.inet_ntoa(bootp[16:20]),
        "siaddr": socket.inet_ntoa(bootp[20:24]),
        "file": bootp[108:236].split(b"\0", 1)[0].decode(errors="replace"),
        "options": options,
    }


def _pxe_suboptions(data: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 1 < len(data) and data[i] != 255:
        out[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return out


def _describe(reply: dict[str, Any]) -> dict[str, Any]:
    opts = reply["options"]
    vendor = opts.get(43, b"")
    return {
        "from": reply["from"],
        "type": opts.get(53, b"\0")[0],
        "yiaddr": reply["yiaddr"],
        "siaddr": reply["siaddr"],
        # The boot file: option 67 when asked for (the request's parameter list has it), else the BOOTP file field.
        "file": opts[67].rstrip(b"\0").decode(errors="replace") if 67 in opts else reply["file"],
        "server_id": socket.inet_ntoa(opts[54]) if 54 in opts else "",
        "vendor_class": opts.get(60, b"").decode(errors="replace"),
        "tftp_server": opts.get(66, b"").decode(errors="replace"),
        "option43": vendor.hex(),
        "pxe_menu": [v.hex() for k, v in sorted(_pxe_suboptions(vendor).items())],
        "raspberry_pi_boot": RPI_BOOT in vendor,
        "router": socket.inet_ntoa(opts[3][:4]) if 3 in opts else "",
        "netmask": socket.inet_ntoa(opts[1]) if 1 in opts else "",
    }


DISCOVERS = 3


def dhcp(iface: str, mac: str, serial: str, model: int, wait: float, guid: bytes | None = None) -> dict[str, Any]:
    hw = bytes.fromhex(mac.replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind((iface, 0))
    sock.settimeout(0.2)
    xid = random.getrandbits(32)
    offers: list[dict[str, Any]] = []
    # The bootloader sends DISCOVER again when nothing answered within DHCP_REQ_TIMEOUT (4000 ms by default, retried
    # until DHCP_TIMEOUT, 45000 ms: the EEPROM settings of the Raspberry Pi bootloader's documentation). Here up to
    # DISCOVERS sends of `wait` seconds each, and only while no server answered at all: a dnsmasq slow to answer under
    # load is retried as a Pi retries it, and a test of a server that answers without the boot option still ends at once.
    for _ in range(DISCOVERS):
        sock.send(_frame(hw, _bootp(xid, hw, request_options(model, hw, serial, 1, guid=guid))))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                reply = _parse(sock.recv(4096))
            except TimeoutError:
                continue
            if reply is not None and reply["xid"] == xid:
                offers.append(reply)
        if offers:
            break
    result: dict[str, Any] = {"offers": [_describe(o) for o in offers]}
    boot = [o for o in offers if RPI_BOOT in o["options"].get(43, b"")]
    address = [o for o in offers if o["yiaddr"] != NO_ADDRESS]
    if not boot or not address:
        return result  # the bootloader retries after DHCP_REQ_TIMEOUT; for the test, nothing usable came
    chosen = address[0]
    server_id = chosen["options"][54]
    sock.send(_frame(hw, _bootp(xid, hw, request_options(model, hw, serial, 3, [(50, socket.inet_aton(chosen["yiaddr"])), (54, server_id)], guid))))
    deadline = time.monotonic() + wait
    ack = None
    while time.monotonic() < deadline and ack is None:
        try:
            reply = _parse(sock.recv(4096))
        except TimeoutError:
            continue
        if reply is not None and reply["xid"] == xid and reply["options"].get(53) == b"\x05":
            ack = reply
    if ack is None:
        return result
    result["ack"] = _describe(ack)
    tftp = boot[0]["siaddr"] if boot[0]["siaddr"] != NO_ADDRESS else boot[0]["options"].get(66, b"").decode()
    result["tftp_server"] = tftp
    mask = ack["options"].get(1, b"\xff\xff\xff\x00")
    prefix = bin(int.from_bytes(mask, "big")).count("1")
    subprocess.run(["ip", "addr", "replace", f"{ack['yiaddr']}/{prefix}", "dev", iface], check=True)
    result["address"] = ack["yiaddr"]
    return result


def tftp_read(server: str, name: str, timeout: float = 2.0) -> dict[str, Any]:
    """One TFTP read as the bootloader makes it: RRQ in octet mode, 512-byte blocks, ACK each."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    sock.sendto(b"\0\x01" + name.encode() + b"\0octet\0", (server, 69))
    data, expected, peer = b"", 1, None
    while True:
        try:
            packet, addr = sock.recvfrom(65536)
        except TimeoutError:
            return {"error": "timeout"}
        opcode = struct.unpack("!H", packet[:2])[0]
        if opcode == 5:
            return {"error": packet[4:].split(b"\0", 1)[0].decode(errors="replace")}
        if opcode != 3:
            continue
        if peer is None:
            peer = addr
        block = struct.unpack("!H", packet[2:4])[0]
        if block == expected:
            data += packet[4:]
            expected += 1
        sock.sendto(b"\0\x04" + packet[2:4], peer)
        if len(packet) - 4 < 512:
            return {"size": len(data), "sha256": __import__("hashlib").sha256(data).hexdigest()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--mac", required=True)
    parser.add_argument("--serial", required=True)
    parser.add_argument("--model", type=int, choices=(4, 5), required=True)
    parser.add_argument("--wait", type=float, default=2.0)
    parser.add_argument("--server", help="read TFTP from this server instead of the DHCP answer's (a Pi's TFTP_IP)")
    # Option 97 as another machine sends it: a BIOS PC's PXE ROM sends the same vendor class and architecture, with its
    # SMBIOS UUID here (type 0, then 16 bytes: RFC 4578 section 2.3).
    parser.add_argument("--guid", help="option 97 in hex, in place of the Raspberry Pi's")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    guid = bytes.fromhex(args.guid) if args.guid else None
    result = dhcp(args.iface, args.mac, args.serial.lower(), args.model, args.wait, guid)
    server = args.server or result.get("tftp_server")
    if server and args.files:
        result["tftp"] = {name: tftp_read(server, name) for name in args.files}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
