// The few methods of ssh2-sftp-client (a devDependency without types) the client matrix uses.
declare module "ssh2-sftp-client" {
  import type { ConnectConfig } from "ssh2"
  export default class SftpClient {
    connect(config: ConnectConfig): Promise<unknown>
    put(localPath: string, remotePath: string): Promise<string>
    fastGet(remotePath: string, localPath: string): Promise<string>
    end(): Promise<boolean>
  }
}
