"""Taking a model away: export zips, "show me the code" scripts, compressed variants.
"""
