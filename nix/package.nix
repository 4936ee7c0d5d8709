# deploy-tools built from package-lock.json: one fixed-output fetch per npm package (no npmDepsHash
# to keep in sync), then `npm ci`-like install offline, node-gyp for the native addons, `npm run build`.
{ lib, buildNpmPackage, importNpmLock, nodejs, version }:

let
  fs = lib.fileset;
in
buildNpmPackage {
  pname = "deploy-tools";
  inherit version nodejs;

  # Only what the build reads: a change to docs/, test/, bench/ or the README does not rebuild.
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../package.json
      ../package-lock.json
      ../tsconfig.json
      ../tsconfig.build.json
      ../scripts/postbuild.mjs
      ../src
      ../deploy/systemd
    ];
  };

  npmDeps = importNpmLock {
    package = lib.importJSON ../package.json;
    packageLock = lib.importJSON ../package-lock.json;
  };
  # The hook runs `npm rebuild`: it must use the build's Node, or the addons get another ABI.
  npmConfigHook = importNpmLock.hooks.npmConfigHook.override { inherit nodejs; };

  # The tests need OpenSSH clients and loopback networking; CI runs them outside Nix.

  meta = {
    description = "Ships file trees from operators to fleets of Linux servers over SSH";
    license = lib.licenses.mit;
    mainProgram = "deploy-registry";
  };
}
