@pack:scrydon @sigstore @sbom
Feature: Scrydon supply-chain verification and vulnerability scan
  "Verify signed Helm charts, signed images, and the SBOM" before each minor
  (quarterly) and major (annual) upgrade, and a continuous vulnerability scan
  and patch cycle. In the sandbox the release is built and signed by
  drillbook's own signing authority; against Scrydon's real releases, name the
  release pipeline's identity and issuer and the production trusted root.

  @id:SCR-10 @quarterly @annually @impact:high
  Scenario: Every artifact of the release is signed and the SBOM is the pipeline's
    Given the release "release"
    And signatures are expected from identity "release-bot@drillbook-local.invalid" and issuer "https://oidc.drillbook-local.invalid"
    Then every artifact has a valid signature from the expected identity
    And the SBOM is signed by the expected identity
    And the SBOM is valid CycloneDX
    And the SBOM covers every artifact of the release

  @id:SCR-11 @continuous @impact:high
  Scenario: No component of the release has a known high or critical vulnerability
    Given the release "release"
    Then no SBOM component has a known vulnerability at or above "high" severity
