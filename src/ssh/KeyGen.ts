// ed25519 key generation through ssh2. ssh2's generateKeyPairSync drops a leading zero byte of the
// public key (about 1 key in 256), giving a private key that ssh2 itself then refuses to parse
// ("Malformed OpenSSH private key"); regenerate until the pair parses.
import ssh2 from "ssh2"

export interface GeneratedKey {
  /** OpenSSH private key file content. */
  readonly private: string
  /** `ssh-ed25519 AAAA… comment` */
  readonly public: string
}

export const generateEd25519 = (comment = ""): GeneratedKey => {
  for (;;) {
    const pair = ssh2.utils.generateKeyPairSync("ed25519", { comment })
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error) && !(ssh2.utils.parseKey(pair.public) instanceof Error)) return pair
  }
}
