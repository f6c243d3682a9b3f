"""Learning scoring rules from sales feedback and outcomes.

labels → which leads turned out good or bad; candidates → rules the data could support;
scorecard → a regularised logistic regression turned into integer points; backtest →
how a rule set ranks held-out leads. `suggest` ties them together into a draft version.
"""
