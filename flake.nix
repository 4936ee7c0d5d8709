{
  description = "deploy-tools: pull-based deployment of file trees over SSH (registry, agent, deployctl, deploy-from-docker)";

  # nixos-26.05, the current stable release, pinned in flake.lock.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      linuxSystems = lib.filter (lib.hasSuffix "-linux") systems;
      packageJson = lib.importJSON ./package.json;
      # What `nix run` users and the NixOS modules get unless they pick another package.
      packageFor = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system}.default;
    in
    {
      packages = forAllSystems (pkgs: rec {
        deploy-tools = pkgs.callPackage ./nix/package.nix {
          inherit (packageJson) version;
          # Node 22 (LTS) for the build, the npm hook and the programs' shebangs: the native addons
          # (better-sqlite3, ssh2's crypto binding) are compiled for this Node's ABI.
          nodejs = pkgs.nodejs_22;
        };
        default = deploy-tools;
      });

      apps = forAllSystems (pkgs:
        let
          app = bin: description: {
            type = "app";
            program = "${packageFor pkgs}/bin/${bin}";
            meta = { inherit description; };
          };
        in
        rec {
          registry = app "deploy-registry" "SSH server that stores deployable file trees";
          agent = app "deploy-agent" "Per-server agent: downloads, verifies, unpacks and deploys a configuration";
          deployctl = app "deployctl" "Operator CLI for the registry";
          from-docker = app "deploy-from-docker" "Imports a docker image's layers into the registry";
          default = registry;
        });

      # Each module defaults its package to this flake's build for the host's system.
      nixosModules = rec {
        registry = { pkgs, ... }: {
          imports = [ ./nix/modules/registry.nix ];
          services.deploy-registry.package = lib.mkDefault (packageFor pkgs);
        };
        agent = { pkgs, ... }: {
          imports = [ ./nix/modules/agent.nix ];
          services.deploy-agent.package = lib.mkDefault (packageFor pkgs);
        };
        default = { imports = [ registry agent ]; };
      };

      # A registry VM and a server VM that deploys from it (needs KVM: `nix flake check` or
      # `nix build .#checks.x86_64-linux.vm`). Only defined with a nixpkgs that has the NixOS test driver.
      checks = lib.genAttrs linuxSystems (system:
        let pkgs = nixpkgs.legacyPackages.${system}; in
        lib.optionalAttrs (pkgs ? testers && pkgs.testers ? runNixOSTest) {
          vm = import ./nix/tests/vm.nix { inherit pkgs self; };
        });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.nodejs_22 pkgs.python3 pkgs.openssh pkgs.gnutar pkgs.gzip ];
        };
      });
    };
}
