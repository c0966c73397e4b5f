"""What clbproxy shows of itself: access log records, metrics, live state, the
admin site and, with workers, the supervisor's aggregate view.
"""
