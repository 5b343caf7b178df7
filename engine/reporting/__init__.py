"""Everything a reader looks at: result tables (:mod:`.tables`), figures (:mod:`.plots`) and the
HTML/Markdown report (:mod:`.html`). Reads metrics and artefacts; never trains or predicts."""
