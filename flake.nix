{
  description = "deploy-tools: pull-based deployment of file trees over SSH (registry, agent, deployctl, deploy-from-docker)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        deploy-tools = pkgs.buildNpmPackage {
          pname = "deploy-tools";
          version = "0.1.0";
          src = ./.;
          nodejs = pkgs.nodejs_20;
          # No npmDepsHash: dependencies come from package-lock.json, one fixed-output fetch per package.
          npmDeps = pkgs.importNpmLock { npmRoot = ./.; };
          npmConfigHook = pkgs.importNpmLock.npmConfigHook;
          # better-sqlite3 and ssh2's optional crypto binding compile with node-gyp.
          nativeBuildInputs = [ pkgs.python3 ] ++ pkgs.lib.optionals pkgs.stdenv.isDarwin [ pkgs.darwin.cctools ];
          npmBuildScript = "build";
          # The tests need sshd-free loopback networking and OpenSSH clients; CI runs them outside nix.
          doCheck = false;
          meta = {
            description = "Ships file trees from operators to fleets of Linux servers over SSH";
            license = pkgs.lib.licenses.mit;
            mainProgram = "deploy-registry";
          };
        };
        default = deploy-tools;
      });

      apps = forAllSystems (pkgs:
        let
          pkg = self.packages.${pkgs.system}.deploy-tools;
          app = bin: { type = "app"; program = "${pkg}/bin/${bin}"; };
        in
        {
          registry = app "deploy-registry";
          agent = app "deploy-agent";
          deployctl = app "deployctl";
          from-docker = app "deploy-from-docker";
          default = app "deploy-registry";
        });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.nodejs_20 pkgs.python3 pkgs.openssh pkgs.gnutar pkgs.gzip ];
        };
      });
    };
}
