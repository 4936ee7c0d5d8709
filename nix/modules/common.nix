# Shared by the registry and agent modules: the sandbox of deploy/systemd/deploy-registry.service
# (test/nix/modules.test.ts keeps the two in step) and ExecStart quoting.
{ lib }:
{
  hardening = {
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    RemoveIPC = true;
    RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" "~@privileged" ];
    # A filtered call fails instead of killing the process (node raises RLIMIT_NOFILE at start).
    SystemCallErrorNumber = "EPERM";
    LimitNOFILE = 65536;
    # Node's JIT needs writable+executable memory, so MemoryDenyWriteExecute stays off.
  };

  # One ExecStart argument: bare when it is plainly safe, else double-quoted with systemd's
  # C-style escapes (JSON's are a subset); `%` and `$` are doubled so systemd takes them literally.
  escapeArg = arg:
    let s = toString arg; in
    if builtins.match "[A-Za-z0-9_./:@=+,-]+" s != null then s
    else builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON s);

  # Directories go into tmpfiles rules and ReadWritePaths lines, which split at white space.
  absolutePath = lib.types.strMatching "/[^[:space:]\"'\\]*";

  # "host:port", "[v6]:port" or ":port" -> port
  portOf = addr: lib.toInt (lib.last (lib.splitString ":" addr));
}
