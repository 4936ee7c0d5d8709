# NixOS VM test (needs KVM): a registry VM with nixosModules.registry, a server VM with
# nixosModules.agent tracking configuration "site"; an operator adds a version and a configuration,
# the agent deploys it, a reload (SIGHUP) polls at once, a change is deployed, and stop is clean.
#   nix build .#checks.x86_64-linux.vm -L
# keys/ holds throwaway test keys (never use them elsewhere); the registry gets a fixed host key so
# the agent's fingerprint is known when the server's configuration is built.
{ pkgs, self }:

let
  fingerprint = "SHA256:K8mxJYgEmnlUX764iHHAhfDWK9Y4eS+RtYH8yaZKWSI"; # ssh-keygen -lf keys/host_key.pub
  deployctl = "USER=root deployctl -addr registry:2022 -fp ${fingerprint} -key /root/operator";
in
pkgs.testers.runNixOSTest {
  name = "deploy-tools";

  nodes.registry = { pkgs, ... }: {
    imports = [ self.nixosModules.registry ];
    services.deploy-registry = {
      enable = true;
      operatorKeys = [ (pkgs.lib.fileContents ./keys/operator.pub) ];
      agentKeys = [ (pkgs.lib.fileContents ./keys/agent.pub) ];
      openFirewall = true;
    };
    systemd.services.deploy-registry.preStart = ''
      install -m 0600 ${./keys/host_key} /var/lib/deploy-registry/host_key
    '';
    environment.systemPackages = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default pkgs.gnutar pkgs.gzip ];
  };

  nodes.server = { pkgs, ... }: {
    imports = [ self.nixosModules.agent ];
    environment.etc."deploy-agent/key" = { source = ./keys/agent; mode = "0400"; };
    services.deploy-agent.instances.site = {
      registry = "registry:2022";
      inherit fingerprint;
      keyFile = "/etc/deploy-agent/key";
      script = pkgs.writeShellScript "deploy-site" ''
        ln -sfn "$NEWROOT" current.tmp && mv -T current.tmp current
        echo "deployed $NEWID"
      '';
      poll = "1h"; # the reload below must be what makes it poll
    };
  };

  testScript = ''
    start_all()
    registry.wait_for_unit("deploy-registry.service")
    registry.wait_for_open_port(2022)
    registry.succeed(
      "install -m 0600 ${./keys/operator} /root/operator",
      "mkdir -p /tmp/v1 /tmp/v2 && echo one > /tmp/v1/index.html && echo two > /tmp/v2/index.html",
      "tar czf /tmp/v1.tar.gz -C /tmp/v1 index.html && tar czf /tmp/v2.tar.gz -C /tmp/v2 index.html",
      "${deployctl} addver -name site -version v1 -file /tmp/v1.tar.gz",
      "${deployctl} addconf -name site -layer site:v1",
    )

    server.wait_for_unit("deploy-agent-site.service")
    server.wait_until_succeeds("grep -qx one /var/lib/deploy-agent/site/current/index.html", timeout=60)
    server.succeed("test \"$(stat -c %U /var/lib/deploy-agent/site/current/index.html)\" = deploy-agent")

    registry.succeed(
      "${deployctl} addver -name site -version v2 -file /tmp/v2.tar.gz",
      "${deployctl} changeconf -name site -component site -version v2",
    )
    server.succeed("systemctl reload deploy-agent-site.service")
    server.wait_until_succeeds("grep -qx two /var/lib/deploy-agent/site/current/index.html", timeout=60)
    server.succeed("journalctl -u deploy-agent-site.service | grep -q 'SIGHUP: polling now'")

    server.succeed("systemctl stop deploy-agent-site.service")
    server.fail("systemctl is-failed deploy-agent-site.service")
  '';
}
