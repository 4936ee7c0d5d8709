// ssh2 writes each SSH packet to its socket separately: a dozen small ones per handshake, eight 32 KiB
// channel packets per 255 KiB SFTP READ reply or WRITE request, one syscall each. Both ends of our SSH
// edge (the registry's accepted sockets, our clients' connections) batch them instead.
import type * as net from "node:net"

/**
 * Coalesces every write of one tick into one writev: the socket is corked at the first write of a tick and
 * uncorked on process.nextTick, which always runs before the event loop goes on, so nothing stays corked.
 * With `"loop"`, every write of one turn of the event loop instead (uncorked by setImmediate, in the same
 * turn's check phase; the loop does not wait for I/O while an immediate is pending): the registry's
 * replies to several packets read in one turn (SFTP WRITE acknowledgements as their fs.writes complete),
 * and a reply its fiber finishes a few microtasks after the packet's own tick, leave in one syscall.
 */
export const coalesceWrites = (socket: net.Socket, over: "tick" | "loop" = "tick"): void => {
  let corked = false
  const uncork = () => {
    corked = false
    socket.uncork()
  }
  const later = over === "tick" ? (f: () => void) => process.nextTick(f) : (f: () => void) => void setImmediate(f)
  const write = socket.write
  socket.write = function (this: net.Socket, ...args: Parameters<net.Socket["write"]>) {
    if (!corked) {
      corked = true
      socket.cork()
      later(uncork)
    }
    return write.apply(this, args)
  } as net.Socket["write"]
}
