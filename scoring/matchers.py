"""Matcher keys: the identity of an activity filter that daily aggregates are kept for."""

import hashlib


def matcher_key(type_key: str, property_name: str = "", property_operator: str = "", property_value: str = "") -> str:
    if not property_name:
        return type_key
    test = f"{type_key}|{property_name}|{property_operator}|{property_value.lower()}"
    return "f:" + hashlib.sha1(test.encode()).hexdigest()
