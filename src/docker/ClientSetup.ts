// How deploy-from-docker authenticates and checks the registry's host key: deployctl's policy,
// which lives in src/ssh/ClientConnect.ts (-key FILE, else ssh-agent via $SSH_AUTH_SOCK; the host
// key pinned by -fp SHA256:…, else ~/.ssh/known_hosts).
import { credentials } from "../ssh/ClientConnect.js"

/** Resolved up front (before the archive is read) so a key problem is reported at once. */
export const clientAuth = (key: string | undefined) => credentials(key, process.env.SSH_AUTH_SOCK)
