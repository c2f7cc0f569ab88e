@sigstore @sbom
Feature: A release is verified before it is installed
  Scrydon's supply-chain runbook asks operators to "verify signed Helm charts,
  signed images, and the SBOM" before an upgrade, and lists a continuous
  vulnerability scan. Done by hand with cosign, it is skipped under pressure.
  These scenarios make it a gate: every artifact of the release directory
  (tarballs, wheels, Helm charts, images.txt) must carry a sigstore bundle that
  verifies offline against a pinned trusted root, signed by the release
  pipeline's identity, and the SBOM must describe exactly what ships.

  In the sandbox the release is built and signed by drillbook's own signing
  authority, with its own trusted root; against a real release, name the
  pipeline's identity and issuer (and `Given the trusted root "production"`).

  @id:SUP-01 @pre-upgrade @impact:high @ref:ISO27001-A.8.30 @control:SR-4
  Scenario: Every artifact of the release is signed by the release pipeline
    An artifact without a bundle, a bundle for other bytes, or a certificate
    issued to anyone else means the file did not come from the pipeline.

    Given the release "release"
    And signatures are expected from identity "release-bot@drillbook-local.invalid" and issuer "https://oidc.drillbook-local.invalid"
    Then every artifact has a valid signature from the expected identity

  @id:SUP-02 @pre-upgrade @impact:high @ref:ISO27001-A.8.30 @control:SR-4
  Scenario: The build provenance covers every artifact
    A signed in-toto attestation (SLSA provenance) names the SHA-256 of every
    file it built: an artifact it does not name was not built by that run.

    Given the release "release"
    And signatures are expected from identity "release-bot@drillbook-local.invalid" and issuer "https://oidc.drillbook-local.invalid"
    Then the provenance attestation verifies and covers every artifact

  @id:SUP-03 @pre-upgrade @impact:high @ref:ISO27001-A.5.21 @control:SR-4
  Scenario: The SBOM is signed, valid and describes exactly what ships
    The SBOM is only worth the vulnerability scan built on it if it is the
    pipeline's own (signed), well-formed for the CycloneDX version it declares,
    and lists every artifact and image digest of the release by hash.

    Given the release "release"
    And signatures are expected from identity "release-bot@drillbook-local.invalid" and issuer "https://oidc.drillbook-local.invalid"
    Then the SBOM is signed by the expected identity
    And the SBOM is valid CycloneDX
    And the SBOM covers every artifact of the release
    And every SBOM component is complete for its type
    And no SBOM component carries a denied licence: AGPL-3.0-only, SSPL-1.0

  @id:SUP-04 @continuous @pre-upgrade @impact:high @ref:ISO27001-A.8.8 @control:RA-5
  Scenario: No component of the release has a known high or critical vulnerability
    Checked against an offline OSV advisory mirror the team refreshes; each hit
    is reported with its id, severity, affected range and fixed version.

    Given the release "release"
    Then no SBOM component has a known vulnerability at or above "high" severity
