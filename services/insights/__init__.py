"""The insights service: The province's read model of cashless adoption by commune, sector and day, fed only by events."""
