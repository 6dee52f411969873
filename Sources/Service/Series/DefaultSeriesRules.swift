/// The built-in rules, the same text as `docs/series-rules.json` (a test keeps them equal).
extension SeriesRules {
    static let defaultJSON = #"""
{
  "name": "non-contrast head CT (default)",
  "axialToleranceDegrees": 20,
  "minimumSlices": 1,
  "coverageMinimumSlices": 20,
  "preferredSliceThickness": 5,
  "softKernels": "^(STANDARD|STND|SOFT|BRAIN|HEAD|NEURO|UB|UC|FC[0-2][0-9]|H[0-4][0-9]|J[0-4][0-9]|HR[0-4][0-9]|BR[0-4][0-9]|B[0-4][0-9])",
  "sharpKernels": "BONE|LUNG|EDGE|SHARP|DETAIL|^(H[6-9][0-9]|J[6-9][0-9]|HR[6-9][0-9]|BR[6-9][0-9]|B[6-9][0-9]|FC[3-9][0-9]|Y[A-Z])",
  "rules": [
    {"name": "no pixel data (dose reports, other SR, presentation states)", "when": {"hasPixelData": false}, "skip": "not-image"},
    {"name": "not CT (screen captures, other modalities)", "when": {"not": {"modality": ["CT"]}}, "skip": "not-ct"},
    {"name": "scout", "when": {"imageType": ["LOCALIZER"]}, "skip": "localizer"},
    {"name": "reformats and projections", "when": {"imageType": ["REFORMATTED", "MPR", "MIP", "MINIP", "PROJECTION IMAGE", "VOLUME", "CURVED"]}, "skip": "derived"},
    {"name": "images the decoder cannot read (colour, codecs not built in)", "when": {"decodable": false}, "skip": "unsupported-image"},
    {"name": "coronal, sagittal and oblique planes", "when": {"orientation": ["coronal", "sagittal", "oblique"]}, "skip": "not-axial"},
    {"name": "axial CT images", "triage": true}
  ]
}
"""#
}
