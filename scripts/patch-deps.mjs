// Patches to dependencies, applied at install (postinstall) and before every build (prebuild), so a clean
// clone, `npm ci` and the nix build all run the same code. Idempotent: an applied patch is recognised and
// left alone. Loud: if neither the original nor the patched text is found (ssh2 was upgraded or changed),
// this exits 1 naming the patch, so the upgrade is noticed and the patch re-checked.
import { readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)

const patches = [
  {
    // ssh2 1.17.0's EXT_INFO server-sig-algs lacks a comma ("…ecdsa-sha2-nistp521rsa-sha2-512,…"), so a
    // client limited to rsa-sha2-512 finds no mutual algorithm; it also advertises ssh-rsa (SHA-1) and
    // ssh-dss, which the registry refuses (src/registry/Auth.ts). Advertise exactly what is accepted.
    name: "ssh2 server-sig-algs",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/Protocol.js",
    from: `    'ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521'
      + 'rsa-sha2-512,rsa-sha2-256,ssh-rsa,ssh-dss';`,
    to: `    'ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,'
      + 'rsa-sha2-512,rsa-sha2-256'; // patched by deploy-tools scripts/patch-deps.mjs`
  },
  {
    // With an RSA host key, ssh2's server offers ssh-rsa (SHA-1) host key signatures even when the
    // configured serverHostKey list leaves it out ("fall back to the lowest priority"). Honour the list.
    name: "ssh2 host key algorithms",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/server.js",
    from: `        if (sha1Pos === -1) {
          // Fall back to giving SHA1 the lowest priority
          sha1Pos = Infinity;
        }`,
    to: `        // ssh-rsa only when configured (patched by deploy-tools scripts/patch-deps.mjs)`
  },
  // OpenSSH certificates on the client (src/ssh/ClientAuth.ts): the request names the certificate
  // algorithm (ssh-ed25519-cert-v01@openssh.com) but the signature names the plain one (ssh-ed25519),
  // as PROTOCOL.certkeys says and sshd checks; ssh2 writes the request's algorithm in both.
  {
    name: "ssh2 certificate signature algorithm (size)",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/Protocol.js",
    from: `      const sigLen = signature.length;
      p = this._packetRW.write.allocStart;
      packet = this._packetRW.write.alloc(
        1 + 4 + userLen + 4 + 14 + 4 + 9 + 1 + 4 + algoLen + 4 + pubKeyLen + 4
          + 4 + algoLen + 4 + sigLen
      );`,
    to: `      const sigLen = signature.length;
      // patched by deploy-tools scripts/patch-deps.mjs: a certificate signs with its plain algorithm
      const sigAlgo = keyAlgo.replace(/-cert-v01@openssh\\.com$/, '');
      const sigAlgoLen = Buffer.byteLength(sigAlgo);
      p = this._packetRW.write.allocStart;
      packet = this._packetRW.write.alloc(
        1 + 4 + userLen + 4 + 14 + 4 + 9 + 1 + 4 + algoLen + 4 + pubKeyLen + 4
          + 4 + sigAlgoLen + 4 + sigLen
      );`
  },
  {
    name: "ssh2 certificate signature algorithm (write)",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/Protocol.js",
    from: `      writeUInt32BE(packet, 4 + algoLen + 4 + sigLen, p += pubKeyLen);

      writeUInt32BE(packet, algoLen, p += 4);
      packet.utf8Write(keyAlgo, p += 4, algoLen);

      writeUInt32BE(packet, sigLen, p += algoLen);
      packet.set(signature, p += 4);

      // Servers shouldn't send packet type 60 in response to signed publickey`,
    to: `      writeUInt32BE(packet, 4 + sigAlgoLen + 4 + sigLen, p += pubKeyLen);

      writeUInt32BE(packet, sigAlgoLen, p += 4);
      packet.utf8Write(sigAlgo, p += 4, sigAlgoLen); // patched by deploy-tools scripts/patch-deps.mjs

      writeUInt32BE(packet, sigLen, p += sigAlgoLen);
      packet.set(signature, p += 4);

      // Servers shouldn't send packet type 60 in response to signed publickey`
  },
  {
    // ssh2 fills each packet's padding with its own randomFillSync call: 4–19 bytes, but a crypto job each
    // (3 µs idle, 13 µs on a loaded machine), once per 32 KiB packet of every upload and download. Take the
    // padding from a pool of random bytes refilled 64 KiB at a time instead; no byte is handed out twice.
    name: "ssh2 pooled random padding",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/crypto.js",
    from: `const {
  createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual
} = require('crypto');`,
    to: `const {
  createCipheriv, createDecipheriv, createHmac, timingSafeEqual
} = require('crypto');
// Padding from a pool of random bytes (patched by deploy-tools scripts/patch-deps.mjs)
const randomFillSync = (() => {
  const fill = require('crypto').randomFillSync;
  const pool = Buffer.allocUnsafe(65536);
  let pos = pool.length;
  return (buf, offset, size) => {
    if (size > 256) return fill(buf, offset, size);
    if (pos + size > pool.length) {
      fill(pool);
      pos = 0;
    }
    pool.copy(buf, offset, pos, pos + size);
    pos += size;
    return buf;
  };
})();`
  },
  {
    // curve25519 key exchange: ssh2 exports its ephemeral public key as DER and imports the peer's from a
    // DER it builds, once each per handshake, on both ends. Through OpenSSL 3's encoders and decoders each
    // costs ~0.3-0.45 ms (more than the X25519 itself); the raw key as JWK takes 3 µs to export and 45 µs to
    // import. Same keys, same checks (a peer key of the wrong length is refused by the import).
    // The JWK is made by the key generation itself (publicKeyEncoding), NOT by `publicKey.export({ format:
    // 'jwk' })`: on Node 20 that export holds the key's mutex while it allocates, a garbage collection then
    // runs the finished KeyGenJob's destructor, which takes the same mutex, and the process deadlocks for good
    // (seen in the benchmark's load generator; test/ssh/X25519Deadlock.test.ts). Inside the generation the
    // job is still referenced, so its destructor cannot run.
    name: "ssh2 x25519 key generation",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/kex.js",
    from: `        this._keys = generateKeyPairSync('x25519');`,
    to: `        this._keys = generateKeyPairSync('x25519', { publicKeyEncoding: { format: 'jwk' } }); // patched by deploy-tools scripts/patch-deps.mjs`
  },
  {
    name: "ssh2 x25519 public key export",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/kex.js",
    from: `      const key = this._keys.publicKey.export({ type: 'spki', format: 'der' });
      return key.slice(-32); // HACK: avoids parsing DER/BER header`,
    to: `      // raw key from the JWK made with the key (patched by deploy-tools scripts/patch-deps.mjs)
      return Buffer.from(this._keys.publicKey.x, 'base64url');`
  },
  {
    name: "ssh2 x25519 public key import",
    package: "ssh2",
    version: "1.17.0",
    file: "lib/protocol/kex.js",
    from: `        const asnWriter = new Ber.Writer();
        asnWriter.startSequence();
          // algorithm
          asnWriter.startSequence();
            asnWriter.writeOID('1.3.101.110'); // id-X25519
          asnWriter.endSequence();

          // PublicKey
          asnWriter.startSequence(Ber.BitString);
            asnWriter.writeByte(0x00);
            // XXX: hack to write a raw buffer without a tag -- yuck
            asnWriter._ensure(otherPublicKey.length);
            otherPublicKey.copy(asnWriter._buf,
                                asnWriter._offset,
                                0,
                                otherPublicKey.length);
            asnWriter._offset += otherPublicKey.length;
          asnWriter.endSequence();
        asnWriter.endSequence();

        return convertToMpint(diffieHellman({
          privateKey: this._keys.privateKey,
          publicKey: createPublicKey({
            key: asnWriter.buffer,
            type: 'spki',
            format: 'der',
          }),
        }));`,
    to: `        // raw key via JWK, not DER (patched by deploy-tools scripts/patch-deps.mjs)
        return convertToMpint(diffieHellman({
          privateKey: this._keys.privateKey,
          publicKey: createPublicKey({
            key: { kty: 'OKP', crv: 'X25519', x: otherPublicKey.toString('base64url') },
            format: 'jwk',
          }),
        }));`
  }
]

let failed = false
for (const p of patches) {
  const root = require.resolve(`${p.package}/package.json`).replace(/package\.json$/, "")
  const { version } = JSON.parse(readFileSync(`${root}package.json`, "utf8"))
  const file = `${root}${p.file}`
  const text = readFileSync(file, "utf8")
  if (version !== p.version) {
    console.error(`patch-deps: ${p.name}: ${p.package} is ${version}, the patch is for ${p.version}; re-check it`)
    failed = true
  } else if (text.includes(p.to)) {
    // already applied
  } else if (text.split(p.from).length === 2) {
    writeFileSync(file, text.replace(p.from, p.to))
    console.error(`patch-deps: applied ${p.name} to ${p.package}/${p.file}`)
  } else {
    console.error(`patch-deps: ${p.name}: the text to patch is not in ${p.package}/${p.file}; re-check the patch`)
    failed = true
  }
}
if (failed) process.exit(1)
