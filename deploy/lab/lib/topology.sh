# shellcheck shell=bash
# shellcheck disable=SC2034 # variables used by the scripts that source this file
# The lab's topology facts: node names, interface names, addresses. Sourced by deploy/lab/lab.
# Addresses follow docs/scenario (Alibaba Cloud's active/standby Express Connect + IPsec-VPN
# guide); addresses the guide masks or does not give come from documentation/CGNAT ranges.
#
#  dc ──lan── gw ──ec── line ──ec── vbr ──cen── cen ──vpc1── ecs
#  (tap-ec,   │                                  │
#   tap-inet) └──inet── inet ──inet── vpn ──vpc2─┘
#
# dc   DC host, runs the agent; its tap-ec / tap-inet receive the gateway's SPAN mirrors
# gw   DC gateway: Express Connect port "ec", internet port "inet", BGP AS 65530, IPsec initiator
# line the Express Connect circuit: a tc wire between two veths (no addresses), so the VBR does
#      not see the gateway's port go down, and a line fault can be silent
# vbr  virtual border router, AS 45104
# cen  cloud router standing for CEN (+ the VPCs' vrouters), runs the CEN health check
# vpn  VPN gateway in transit VPC2, IPsec responder
# inet the internet between the two public addresses
# ecs  the ECS instance in VPC1, runs the reflector

LAB_NODES=(dc gw line vbr cen vpn inet ecs)
LAB_ROUTERS=(gw vbr cen vpn)

# Data center
DC_NET=172.16.0.0/16
DC_HOST=172.16.1.188
DC_LAN_GW=172.16.1.1
DC_LAN_LEN=24
TAP_EC=tap-ec
TAP_INET=tap-inet

# Express Connect (VBR 10.1.0.0/30)
EC_GW=10.1.0.2
EC_VBR=10.1.0.1
EC_LEN=30
GW_ASN=65530
CLOUD_ASN=45104

# The DC gateway's static routes live in their own kernel table, consulted after main.
GW_STATIC_TABLE=100
GW_STATIC_RULE_PREF=32790

# Internet / IPsec (the guide masks the gateway's public IP as 211.XX.XX.68)
GW_PUB=198.51.100.68
INET_GW_SIDE=198.51.100.1
VPN_PUB=203.0.113.10
INET_VPN_SIDE=203.0.113.1
PUB_LEN=24
ESP_UDP_PORT=4500

# Cloud
VBR_CEN=100.64.0.1
CEN_VBR=100.64.0.2
CLOUD_LINK_LEN=30
VPC2_NET=10.0.0.0/16
CEN_VPC2=10.0.0.1
VPN_VPC2=10.0.0.2
VPC2_LEN=24
VPC1_NET=192.168.0.0/16
CEN_VPC1=192.168.20.1
ECS=192.168.20.161
VPC1_LEN=24
# The cloud router's interfaces towards the VBR (Express Connect) and VPC2 (the VPN gateway):
# where both paths are in clear (drills capture an agent's probes there).
CEN_EC_IF=vbr
CEN_VPN_IF=vpc2
# The STAMP reflector port an agent's probes use (drills capture it; PS_LAB_STAMP_PORT).
PROBE_STAMP_PORT=${PS_LAB_STAMP_PORT:-862}
# kernel-libipsec needs the VPN gateway to own an address inside its local traffic selector
VPN_TS_ADDR=192.168.255.254
# CEN health check: probes from an automatic address in 100.96.0.0/16 to the gateway's EC address
HC_SRC=100.96.0.10

# IPsec proposals: IKE aes128-sha256-modp2048; ESP by default aes128-sha256 (AES-CBC,
# HMAC-SHA256-128). PS_LAB_ESP_PROPOSAL picks another ESP proposal for the lab it brings up:
# aes{128,192,256}-sha1|sha256|sha384|sha512 (the aes, sha1, sha2, hmac plugins) or
# aes{128,256}gcm8|gcm12|gcm16 (the gcm plugin, libstrongswan-standard-plugins: scripts/deps.sh).
# ESP is always inside UDP 4500 here: kernel-libipsec in 5.9.8 sends nothing else.
IKE_PROPOSAL=aes128-sha256-modp2048
ESP_PROPOSAL=${PS_LAB_ESP_PROPOSAL:-aes128-sha256}
case "$ESP_PROPOSAL" in
  aes128-sha1 | aes192-sha1 | aes256-sha1 | aes128-sha256 | aes192-sha256 | aes256-sha256 | \
    aes128-sha384 | aes192-sha384 | aes256-sha384 | aes128-sha512 | aes192-sha512 | \
    aes256-sha512 | aes128gcm8 | aes128gcm12 | aes128gcm16 | aes256gcm8 | aes256gcm12 | \
    aes256gcm16) ;;
  *)
    echo "PS_LAB_ESP_PROPOSAL=$ESP_PROPOSAL: not one of aes{128,192,256}-sha1|sha256|sha384|sha512," \
      "aes{128,256}gcm8|gcm12|gcm16" >&2
    exit 1
    ;;
esac
# ESP length for an inner IP packet of L bytes (RFC 4303): header 8 + IV + the payload and its
# 2 trailer bytes padded to the block + ICV. AES-CBC: IV 16, block 16, ICV 12 (sha1),
# 16 (sha256), 24 (sha384), 32 (sha512); AES-GCM: IV 8, block 4, ICV 8/12/16.
esp_len_for_inner() {
  local iv=16 block=16 icv
  case "$ESP_PROPOSAL" in
    *-sha1) icv=12 ;;
    *-sha256) icv=16 ;;
    *-sha384) icv=24 ;;
    *-sha512) icv=32 ;;
    *gcm*) iv=8 block=4 icv=${ESP_PROPOSAL##*gcm} ;;
  esac
  echo $((8 + iv + ($1 + 2 + block - 1) / block * block + icv))
}
