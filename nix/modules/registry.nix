# services.deploy-registry: the registry as a hardened system service (docs/registry.md, "Nix").
{ config, lib, pkgs, ... }:

let
  cfg = config.services.deploy-registry;
  common = import ./common.nix { inherit lib; };
  inherit (lib) mkOption types;

  # A keys file: the given path (read at start by the service), or the listed keys written to the store
  # (public keys only, so the store is fine).
  keysFile = what: file: keys:
    if file != null then "${file}" else pkgs.writeText "deploy-registry-${what}.keys" (lib.concatLines keys);
  keyOptions = what: flag: {
    "${what}Keys" = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... alice@laptop" ];
      description = "OpenSSH public keys (authorized_keys lines) of the ${what}s, for `${flag}`. Set this or `${what}KeysFile`.";
    };
    "${what}KeysFile" = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/etc/deploy-registry/${what}.keys";
      description = "An authorized_keys file of the ${what}s, for `${flag}`, read by the service at start. Set this or `${what}Keys`.";
    };
  };
  defaultDataDir = "/var/lib/deploy-registry";
in
{
  options.services.deploy-registry = {
    enable = lib.mkEnableOption "deploy-registry, the SSH server that stores deployable file trees";

    package = mkOption {
      type = types.package;
      description = "The deploy-tools package (the flake's module sets it to the flake's build).";
    };

    listenAddress = mkOption {
      type = types.str;
      default = ":2022";
      example = "10.0.0.5:2022";
      description = "Address to listen on (`-addr`): `host:port`, `[v6]:port`, or `:port` for every interface.";
    };

    dataDir = mkOption {
      type = common.absolutePath;
      default = defaultDataDir;
      description = ''
        Data directory (`-dir`): state.db, host_key, files/, uploads/. The default is the unit's
        StateDirectory; another directory is created by tmpfiles, mode 0700, owned by the service user.
      '';
    };

    maxVersions = mkOption {
      type = types.ints.between 1 1000000;
      default = 10;
      description = "Retention (`-maxver`): versions kept per component; versions a configuration uses are always kept.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the listen port in the firewall.";
    };

    extraFlags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "-deadline" "1h" ];
      description = "More deploy-registry flags, appended to the command line.";
    };

    user = mkOption {
      type = types.str;
      default = "deploy-registry";
      description = "User the registry runs as (created when left at the default).";
    };

    group = mkOption {
      type = types.str;
      default = "deploy-registry";
      description = "Group the registry runs as (created when left at the default).";
    };
  }
  // keyOptions "operator" "-opauth"
  // keyOptions "agent" "-srvauth";

  config = lib.mkIf cfg.enable {
    assertions = lib.concatMap (what: [
      {
        assertion = (cfg."${what}KeysFile" == null) != (cfg."${what}Keys" == [ ]);
        message = "services.deploy-registry: set exactly one of ${what}Keys (at least one key) and ${what}KeysFile.";
      }
    ]) [ "operator" "agent" ];

    users.users = lib.optionalAttrs (cfg.user == "deploy-registry") {
      deploy-registry = {
        isSystemUser = true;
        group = cfg.group;
        home = cfg.dataDir;
        description = "deploy-registry service";
      };
    };
    users.groups = lib.optionalAttrs (cfg.group == "deploy-registry") { deploy-registry = { }; };

    systemd.tmpfiles.rules = lib.optional (cfg.dataDir != defaultDataDir)
      "d ${cfg.dataDir} 0700 ${cfg.user} ${cfg.group} - -";

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall (common.portOf cfg.listenAddress);

    systemd.services.deploy-registry = {
      description = "deploy-registry: stores deployable file trees, served over SSH/SFTP";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      serviceConfig = common.hardening // {
        Type = "simple";
        ExecStart = lib.concatMapStringsSep " " common.escapeArg ([
          (lib.getExe' cfg.package "deploy-registry")
          "-addr" cfg.listenAddress
          "-dir" cfg.dataDir
          "-opauth" (keysFile "operator" cfg.operatorKeysFile cfg.operatorKeys)
          "-srvauth" (keysFile "agent" cfg.agentKeysFile cfg.agentKeys)
          "-maxver" (toString cfg.maxVersions)
        ] ++ cfg.extraFlags);
        User = cfg.user;
        Group = cfg.group;
        UMask = "0077";
        # SIGTERM: stop accepting, end sessions (unfinished uploads are discarded), exit 0
        KillSignal = "SIGTERM";
        TimeoutStopSec = 30;
        Restart = "on-failure";
        RestartSec = "2s";
        # Start-up errors (bad flags, keys file without keys) are not worth retrying in a tight loop.
        RestartPreventExitStatus = 2;
      } // (if cfg.dataDir == defaultDataDir then {
        StateDirectory = "deploy-registry";
        StateDirectoryMode = "0700";
      } else {
        ReadWritePaths = [ cfg.dataDir ];
      });
    };
  };
}
