# Evaluates nix/modules/*.nix with lib.evalModules against minimal stand-ins for the NixOS options
# they set, directly and through the flake (its nixosModules, and the machines of its VM check, with a
# stand-in package set), for test/nix/modules.test.ts:
#   nix-instantiate --eval --strict --json nix/tests/eval-modules.nix --arg lib 'import <nixpkgs/lib>'
# Each case gives the units, users, tmpfiles rules, firewall ports and failed assertions it produced.
{ lib }:

let
  inherit (lib) mkOption types;
  stubOptions = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      users.users = mkOption { type = types.attrsOf types.anything; default = { }; };
      users.groups = mkOption { type = types.attrsOf types.anything; default = { }; };
      systemd.services = mkOption { type = types.attrsOf types.anything; default = { }; };
      systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
      networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
      # set by the VM test's machines
      environment.etc = mkOption { type = types.attrsOf types.anything; default = { }; };
      environment.systemPackages = mkOption { type = types.listOf types.anything; default = [ ]; };
    };
  };
  system = "x86_64-linux";
  package = {
    type = "derivation";
    name = "deploy-tools-0.1.0";
    outPath = "/nix/store/11111111111111111111111111111111-deploy-tools-0.1.0";
  };
  stub = name: "/nix/store/00000000000000000000000000000000-${name}";
  pkgs = {
    inherit lib;
    writeText = builtins.toFile;
    writeShellScript = builtins.toFile;
    coreutils = stub "coreutils";
    gnutar = stub "gnutar";
    gzip = stub "gzip";
    stdenv.hostPlatform.system = system;
    # what the flake asks of nixpkgs on the way to its modules and checks
    callPackage = _: _: package;
    testers.runNixOSTest = test: test;
  };
  # The flake's own outputs, with this pkgs as every system's package set.
  flake = (import ../../flake.nix).outputs {
    self = flake;
    nixpkgs = { inherit lib; legacyPackages = lib.genAttrs [ system ] (_: pkgs); };
  };
  evalConfig = modules:
    let
      c = (lib.evalModules {
        modules = [ stubOptions { _module.args.pkgs = pkgs; } ] ++ modules;
      }).config;
    in
    {
      services = c.systemd.services;
      users = lib.attrNames c.users.users;
      groups = lib.attrNames c.users.groups;
      tmpfiles = c.systemd.tmpfiles.rules;
      firewall = c.networking.firewall.allowedTCPPorts;
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
    };
  eval = module: config: evalConfig [ module config ];
  registry = eval ../modules/registry.nix;
  agent = eval ../modules/agent.nix;
  vm = flake.checks.${system}.vm;
  opKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qgb3BlcmF0b3Iga2V5IGZvciB0aGUgbW9kdWxlIHRlc3Q alice@laptop";
  fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
in
{
  inherit package;

  registry = registry {
    services.deploy-registry = {
      enable = true;
      inherit package;
      listenAddress = "10.0.0.5:2200";
      operatorKeys = [ opKey ];
      agentKeysFile = "/etc/deploy-registry/service.keys";
      maxVersions = 25;
      openFirewall = true;
      extraFlags = [ "-deadline" "1h" ];
    };
  };

  registryDataDir = registry {
    services.deploy-registry = {
      enable = true;
      inherit package;
      dataDir = "/srv/deploy-registry";
      operatorKeysFile = "/etc/deploy-registry/operator.keys";
      agentKeys = [ opKey ];
    };
  };

  registryDisabled = registry { services.deploy-registry.operatorKeys = [ opKey ]; };

  registryBothKeys = registry {
    services.deploy-registry = {
      enable = true;
      inherit package;
      operatorKeys = [ opKey ];
      operatorKeysFile = "/etc/deploy-registry/operator.keys";
    };
  };

  agent = agent {
    services.deploy-agent = {
      inherit package;
      instances.site = {
        registry = "registry.example.com:2022";
        fingerprint = fp;
        keyFile = "/etc/deploy-agent/id_ed25519";
        script = "/etc/deploy-agent/site.sh";
        extraFlags = [ "-cleanold" ];
      };
      instances.web = {
        configuration = "prod-web";
        registry = "[fd00::1]:2022";
        fingerprint = fp;
        keyFile = "/run/keys/deploy agent";
        dir = "/srv/web";
        poll = "1m";
      };
      instances.off = {
        enable = false;
        registry = "x:1";
        fingerprint = fp;
        keyFile = "/k";
      };
    };
  };

  # nixosModules.default (both modules, package from the flake) with both services configured
  flakeDefault = evalConfig [
    flake.nixosModules.default
    {
      services.deploy-registry = { enable = true; operatorKeys = [ opKey ]; agentKeys = [ opKey ]; };
      services.deploy-agent.instances.site = {
        registry = "registry:2022";
        fingerprint = fp;
        keyFile = "/etc/deploy-agent/key";
      };
    }
  ];

  # the machines of the VM test (nix/tests/vm.nix), as the flake's checks define them
  vm = {
    inherit (vm) name testScript;
    registry = evalConfig [ vm.nodes.registry ];
    server = evalConfig [ vm.nodes.server ];
  };

  agentStoreKey = agent {
    services.deploy-agent = {
      inherit package;
      instances.site = {
        registry = "registry.example.com:2022";
        fingerprint = fp;
        keyFile = "${builtins.storeDir}/22222222222222222222222222222222-id_ed25519";
      };
    };
  };
}
