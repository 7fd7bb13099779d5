"""Sources: where experts come from (the Hugging Face Hub, git remotes, local folders) behind one
interface (base), chosen by a reference's scheme (schemes); publishing (publish)."""
