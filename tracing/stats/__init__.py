"""Operations and statistics: joint operations, request counts and times, SDG indicator 16.4.2.

Counts are computed in the database (GROUP BY, percentiles) and folded by the pure helpers in
`figures`; nothing here exposes a firearm, a case or a person.
"""
