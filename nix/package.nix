# deploy-tools built from package-lock.json: one fixed-output fetch per npm package (no npmDepsHash
# to keep in sync), then `npm ci`-like install offline, node-gyp for the native addons, `npm run build`.
{ lib, buildNpmPackage, importNpmLock, nodejs, version }:

let
  root = ../.;
  # Only what the build reads: a change to docs/, test/, bench/ or the README does not rebuild.
  sourceFiles = [
    "package.json"
    "package-lock.json"
    "tsconfig.json"
    "tsconfig.build.json"
    "scripts/postbuild.mjs"
    "scripts/patch-deps.mjs"
    "src"
    "deploy/systemd"
  ];
  # lib.fileset needs builtins.readFileType (Nix >= 2.14) for a root in the store, as a flake's is.
  # Older Nix (Debian's 2.8, which CI uses) gets the same files, and the same store path, through
  # cleanSourceWith, as fileset itself would.
  src =
    if builtins ? readFileType then
      lib.fileset.toSource {
        inherit root;
        fileset = lib.fileset.unions (map (p: root + "/${p}") sourceFiles);
      }
    else
      lib.cleanSourceWith {
        name = "source";
        src = root;
        filter = path: _type:
          let rel = lib.removePrefix "${toString root}/" (toString path); in
          lib.any (p: rel == p || lib.hasPrefix "${p}/" rel || lib.hasPrefix "${rel}/" p) sourceFiles;
      };
in
buildNpmPackage {
  pname = "deploy-tools";
  inherit version nodejs;

  inherit src;

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
