// What the registry offers in the SSH handshake: only what works end to end with ssh2 1.17 and is
// tested against OpenSSH's client (test/registry/Algorithms.test.ts logs in with each one).
// Left out: diffie-hellman-group-exchange-* (ssh2's server disconnects after the client's group request),
// the SHA-1 KEX and host key algorithms (group1/group14-sha1, ssh-rsa), DSA, CBC ciphers, and groups 15/17
// (no OpenSSH client offers them). Post-quantum hybrids (mlkem768x25519-sha256,
// sntrup761x25519-sha512@openssh.com) are not offered: ssh2 1.17 implements neither, and Node 20's crypto
// has neither ML-KEM nor sntrup761 (docs/registry.md).
export const KEX = [
  "curve25519-sha256",
  "curve25519-sha256@libssh.org",
  "ecdh-sha2-nistp256",
  "ecdh-sha2-nistp384",
  "ecdh-sha2-nistp521",
  "diffie-hellman-group14-sha256",
  "diffie-hellman-group16-sha512",
  "diffie-hellman-group18-sha512"
] as const

/** AES-GCM first: with AES-NI it is the fastest here (SSH2.md). */
export const CIPHERS = [
  "aes128-gcm@openssh.com",
  "aes256-gcm@openssh.com",
  "chacha20-poly1305@openssh.com",
  "aes128-ctr",
  "aes192-ctr",
  "aes256-ctr"
] as const

export const MACS = [
  "hmac-sha2-256-etm@openssh.com",
  "hmac-sha2-512-etm@openssh.com",
  "hmac-sha1-etm@openssh.com",
  "hmac-sha2-256",
  "hmac-sha2-512",
  "hmac-sha1"
] as const

/** Host key signature algorithms, for whichever host key type the registry has (no ssh-rsa: SHA-1). */
export const HOST_KEY = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "rsa-sha2-512",
  "rsa-sha2-256"
] as const

/** The user key algorithms the registry accepts (what EXT_INFO server-sig-algs advertises: scripts/patch-deps.mjs). */
export const USER_KEY = HOST_KEY

/** ssh2's `algorithms` option for the server. */
export const serverAlgorithms = {
  kex: [...KEX],
  cipher: [...CIPHERS],
  hmac: [...MACS],
  serverHostKey: [...HOST_KEY]
}
