import ssh2 from "ssh2"
import { describe, expect, it } from "vitest"
import { generateEd25519 } from "../../src/ssh/KeyGen.js"

describe("generateEd25519", () => {
  it("always yields a pair that ssh2 parses (ssh2's own generator fails about 1 in 256)", () => {
    // 1,500 draws: with the raw generator, P(no bad key) ≈ (255/256)^1500 < 0.3%.
    for (let i = 0; i < 1500; i++) {
      const pair = generateEd25519("t")
      const priv = ssh2.utils.parseKey(pair.private)
      expect(priv).not.toBeInstanceOf(Error)
      expect(ssh2.utils.parseKey(pair.public)).not.toBeInstanceOf(Error)
    }
  })
})
