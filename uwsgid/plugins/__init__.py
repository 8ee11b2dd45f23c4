"""The plugin contract (what a language plugin implements), the runtime API it calls, and the loader."""
