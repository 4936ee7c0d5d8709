# services.deploy-agent.instances.<name>: one hardened agent unit per tracked configuration
# (docs/agent.md, "Nix"). Unit name: deploy-agent-<name>.service.
{ config, lib, pkgs, ... }:

let
  top = config.services.deploy-agent;
  common = import ./common.nix { inherit lib; };
  inherit (lib) mkOption types;
  enabled = lib.filterAttrs (_: i: i.enable) top.instances;

  instanceOptions = { name, ... }: {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run this agent.";
      };
      package = mkOption {
        type = types.package;
        default = top.package;
        defaultText = lib.literalExpression "config.services.deploy-agent.package";
        description = "The deploy-tools package for this agent.";
      };
      registry = mkOption {
        type = types.str;
        example = "registry.example.com:2022";
        description = "The registry's address (`-addr`), host:port.";
      };
      fingerprint = mkOption {
        type = types.strMatching "SHA256:[A-Za-z0-9+/]{43}=?";
        example = "SHA256:2mYlJ8bqY5f0j0Q6bMk3QnQ0o7xkJb1q0Hc8mQJwq0c";
        description = "The registry's host key fingerprint (`-fp`), as the registry logs it at start.";
      };
      keyFile = mkOption {
        type = types.str;
        example = "/etc/deploy-agent/id_ed25519";
        description = ''
          The agent's SSH private key (`-key`). A path outside the Nix store: the unit reads it as root
          with LoadCredential, so the file may stay root-only (mode 0400).
        '';
      };
      configuration = mkOption {
        type = types.str;
        default = name;
        defaultText = lib.literalExpression "<name>";
        description = "The configuration to track (`-name`).";
      };
      dir = mkOption {
        type = common.absolutePath;
        default = "/var/lib/deploy-agent/${name}";
        defaultText = lib.literalExpression "\"/var/lib/deploy-agent/<name>\"";
        description = ''
          Working directory (`-dir`): cache/, unpacked/, state.json. The default is the unit's
          StateDirectory; another directory is created by tmpfiles and made writable for the unit.
        '';
      };
      script = mkOption {
        type = types.nullOr (types.either types.path types.str);
        default = null;
        example = lib.literalExpression ''
          pkgs.writeShellScript "deploy" '''
            ln -sfn "$NEWROOT" current.tmp && mv -T current.tmp current
          '''
        '';
        description = ''
          Deploy script (`-script`), run in `dir` on every change with NEWROOT, NEWID, OLDID set;
          null for none. It runs inside the unit's sandbox, as the agent's user.
        '';
      };
      path = mkOption {
        type = types.listOf types.package;
        default = [ ];
        example = lib.literalExpression "[ pkgs.rsync ]";
        description = "Packages on the deploy script's PATH (besides coreutils, grep, sed and the like).";
      };
      poll = mkOption {
        type = types.str;
        default = "30s";
        example = "1m";
        description = "Poll interval (`-poll`, Go duration).";
      };
      extraFlags = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "-cleanold" "-v" ];
        description = "More deploy-agent flags, appended to the command line.";
      };
      readWritePaths = mkOption {
        type = types.listOf common.absolutePath;
        default = [ ];
        description = "Paths besides `dir` the deploy script may write (the file system is read-only otherwise).";
      };
    };
  };

  unitFor = name: i: {
    description = "deploy-agent for configuration ${i.configuration}";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    inherit (i) path;
    serviceConfig = common.hardening // {
      Type = "simple";
      # `-key %d/key`: the credential directory (%d is a systemd specifier, so it is not escaped).
      ExecStart = lib.concatStringsSep " " ([
        (common.escapeArg (lib.getExe' i.package "deploy-agent"))
      ] ++ map common.escapeArg [ "-name" i.configuration "-addr" i.registry "-fp" i.fingerprint ]
        ++ [ "-key" "%d/key" ]
        ++ map common.escapeArg ([
          "-dir" i.dir
          "-state" "${i.dir}/state.json"
          "-script" (if i.script == null then "" else "${i.script}")
          "-poll" i.poll
        ] ++ i.extraFlags));
      # SIGHUP makes the agent poll at once.
      ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
      LoadCredential = [ "key:${i.keyFile}" ];
      User = top.user;
      Group = top.group;
      WorkingDirectory = i.dir;
      # Group-readable trees, so a web server in the agent's group can serve what was deployed.
      UMask = "0027";
      # SIGTERM goes to the agent only: it stops the deploy script's process group itself (SIGTERM,
      # then SIGKILL after 5 s) and exits within 10 s; systemd SIGKILLs leftovers after that.
      KillMode = "mixed";
      KillSignal = "SIGTERM";
      TimeoutStopSec = 15;
      # A held lock (another agent on the same directory) or a crash: try again later.
      Restart = "on-failure";
      RestartSec = 10;
      ReadWritePaths = lib.optional (i.dir != "/var/lib/deploy-agent/${name}") i.dir ++ i.readWritePaths;
    } // lib.optionalAttrs (i.dir == "/var/lib/deploy-agent/${name}") {
      StateDirectory = "deploy-agent/${name}";
      StateDirectoryMode = "0750";
    };
  };
in
{
  options.services.deploy-agent = {
    package = mkOption {
      type = types.package;
      description = "The deploy-tools package (the flake's module sets it to the flake's build).";
    };
    user = mkOption {
      type = types.str;
      default = "deploy-agent";
      description = "User every agent runs as (created when left at the default).";
    };
    group = mkOption {
      type = types.str;
      default = "deploy-agent";
      description = "Group every agent runs as (created when left at the default).";
    };
    instances = mkOption {
      type = types.attrsOf (types.submodule instanceOptions);
      default = { };
      description = "One agent per tracked configuration; the unit is deploy-agent-<name>.service.";
    };
  };

  config = lib.mkIf (enabled != { }) {
    assertions = lib.mapAttrsToList (name: i: {
      assertion = !lib.hasPrefix builtins.storeDir i.keyFile;
      message = "services.deploy-agent.instances.${name}.keyFile: a private key must not be in the world-readable Nix store.";
    }) enabled;

    users.users = lib.optionalAttrs (top.user == "deploy-agent") {
      deploy-agent = {
        isSystemUser = true;
        group = top.group;
        home = "/var/lib/deploy-agent";
        description = "deploy-agent service";
      };
    };
    users.groups = lib.optionalAttrs (top.group == "deploy-agent") { deploy-agent = { }; };

    systemd.tmpfiles.rules = lib.concatLists (lib.mapAttrsToList (name: i:
      lib.optional (i.dir != "/var/lib/deploy-agent/${name}") "d ${i.dir} 0750 ${top.user} ${top.group} - -"
    ) enabled);

    systemd.services = lib.mapAttrs' (name: i: lib.nameValuePair "deploy-agent-${name}" (unitFor name i)) enabled;
  };
}
