"""The report: the study page (html), the one PNG renderer (render), feature pages and the feature browser
(features: data, pages: HTML), safe embedding and CSP (safe), and the Neuronpedia/SAEDashboard export
(export). Reads the run directory only; no analysis imports this package."""
